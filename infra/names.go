package infra

import "strings"

// The helpers of more than one component: how they derive the names of what
// they declare from the names they are given.

// roleSuffix turns roles/container.developer into container-developer: the
// role's part of the name of a binding that grants it (CIIdentity's and
// GKECluster's project roles).
func roleSuffix(role string) string {
	return strings.ReplaceAll(strings.TrimPrefix(role, "roles/"), ".", "-")
}

// truncate cuts s to at most n bytes, for ids GCP bounds in length (the
// nodes' account, the Workload Identity pool, the endpoint's address); the
// names it cuts are ASCII, as those ids must be.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
