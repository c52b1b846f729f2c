// Package infra holds the building blocks of the deployment: one Pulumi
// ComponentResource per file, each registered under the type token
// mlops:infra:<Name> with its children parented to it, and each with its
// test beside it (<file>_test.go, which declares it under Pulumi mocks):
//
//   - ProjectAPIs, ModelRegistry, CIIdentity, GKECluster and
//     EndpointAddress are the Google Cloud side;
//   - ExistingCluster stands in for GKECluster with a cluster that exists;
//   - ModelImage is the model server's image, ModelService runs it, and
//     DeployAccess is what CI's identities may do in its namespace.
//
// A component's Args are its own inputs, as in pulumi/examples'
// kubernetes-go-guestbook: plain values, Pulumi inputs and types of this
// package (CIPlatform, NodeAutoscaling, ServiceType, Autoscaling,
// Resources), and for ModelImage the model's build context as read once
// (fingerprint.BuildContext); never a configuration type. The program (internal/program)
// reads the stack's configuration and maps it onto these Args, so this
// package neither reads the configuration nor depends on its types, and
// each component can be declared, and tested, with exactly the inputs it
// uses.
//
// Beside the components: Collisions (collisions.go) stops a preview that
// would create a name that is taken, the version checks
// (kubernetes_version.go) refuse a cluster too old for the Deployment,
// kubeconfig.go writes GKECluster's kubeconfig, and names.go holds the
// helpers more than one component derives names with.
package infra
