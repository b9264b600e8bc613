// Package deploy holds the Kubernetes manifests that run `xnf run` as a
// DaemonSet (configmap.yaml, daemonset.yaml, servicemonitor.yaml), the
// Dockerfile of the image they run, and their check: deploy_test.go
// parses every manifest and asserts what docs/deployment.md promises of
// them, and loads the ConfigMap's chain file with xnf's own config
// loader, so a change in the code or the docs that the manifests do not
// follow fails the test. It has no Go API.
package deploy
