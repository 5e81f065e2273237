// Package deploy holds example deployment configurations (systemd units
// and Kubernetes manifests). It has no code: its test checks that the
// examples parse and that every flag and variable they use exists in the
// binaries built from this repository.
package deploy
