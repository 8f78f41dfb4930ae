"""OpenShift's project self-provisioning on the local cluster: `project.openshift.io/v1` ProjectRequests and
Projects, served through kube-apiserver's aggregation layer as openshift-apiserver serves them
(`pkg/project/apiserver/registry/projectrequest/delegated/delegated.go` REST.Create, `DefaultTemplate`, and
`pkg/project/apiserver/registry/project/proxy/proxy.go` for projects as views of namespaces).

api.py says what the group looks like and registers it, template.py turns a request into objects (pure),
registry.py makes them with the admin's credentials, server.py answers kube-apiserver's proxied requests."""
