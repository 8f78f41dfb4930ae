"""What ModelMesh and modelmesh-serving define, with no test or lab in it: protos, ids, units, states, storage."""
