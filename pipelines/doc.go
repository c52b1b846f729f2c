// Package pipelines holds no code: its tests check the CI/CD pipelines
// (.github/workflows/*.yml and .gitlab-ci.yml) against what the project needs
// from them: `pulumi preview` only on pull/merge requests, `pulumi up` only on
// main, serialized, keyless, least privilege, pinned, and no secret printed.
package pipelines
