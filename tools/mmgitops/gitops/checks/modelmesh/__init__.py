"""ModelMesh rules: what modelmesh-serving, its runtime adapter and ModelMesh will do with the objects a repository
applies, each rule a port of the code it mirrors (named in the rule's `source`). `validate` imports the rule
modules, which registers them."""
