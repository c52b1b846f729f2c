package infra

import (
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	k8scorev1 "k8s.io/api/core/v1"

	"github.com/planets-mlops/deploy/internal/testenv/mocktest"
)

const testImage = "europe-west6-docker.pkg.dev/planets-mlops-dev/mlops/planet-classifier@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// devService is the model service of the dev stack (Pulumi.yaml's
// defaults) as internal/program maps it, less the image and the
// fingerprint, which declareService gives it.
var devService = ModelServiceArgs{
	Namespace: "live", Name: "planet-classifier", Replicas: 2,
	Resources:   Resources{CPURequest: "250m", CPULimit: "1", MemoryRequest: "128Mi", MemoryLimit: "256Mi"},
	ServiceType: ServiceLoadBalancer, Port: 8080, ProgressDeadlineSeconds: 600,
}

// declareService declares the model service s describes, running testImage
// with the fingerprint f00d, and returns what it declared and its endpoint.
func declareService(t *testing.T, s ModelServiceArgs) (*mocktest.Mocks, string) {
	t.Helper()
	var endpoint string
	mocks := declare(t, func(ctx *pulumi.Context) error {
		s.Image, s.Fingerprint = pulumi.String(testImage), pulumi.String("f00d")
		svc, err := NewModelService(ctx, "model-service", &s)
		if err != nil {
			return err
		}
		endpoint = resolve[string](t, svc.Endpoint)
		return nil
	})
	return mocks, endpoint
}

// want asserts that got equals want, naming what.
func want[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestModelServiceDeploymentRollsSafelyAndIsHardened(t *testing.T) {
	mocks, _ := declareService(t, devService)
	requireParented(t, mocks, "mlops:infra:ModelService")
	d := mocks.One(t, "kubernetes:apps/v1:Deployment")
	want(t, "namespace", d.Str("metadata.namespace"), "live")
	want(t, "name", d.Str("metadata.name"), "planet-classifier")
	want(t, "replicas", d.Input("spec.replicas").NumberValue(), 2)
	want(t, "progressDeadlineSeconds", d.Input("spec.progressDeadlineSeconds").NumberValue(), 600)
	want(t, "maxUnavailable", d.Input("spec.strategy.rollingUpdate.maxUnavailable").NumberValue(), 0)
	want(t, "maxSurge", d.Input("spec.strategy.rollingUpdate.maxSurge").NumberValue(), 1)
	want(t, "fingerprint annotation", d.Input("spec.template.metadata.annotations").ObjectValue()[FingerprintAnnotation].StringValue(), "f00d")
	want(t, "selector", d.Input("spec.selector.matchLabels").ObjectValue()["app.kubernetes.io/name"].StringValue(), "planet-classifier")

	want(t, "automountServiceAccountToken", d.Input("spec.template.spec.automountServiceAccountToken").BoolValue(), false)
	want(t, "pod runAsNonRoot", d.Input("spec.template.spec.securityContext.runAsNonRoot").BoolValue(), true)
	want(t, "pod seccomp", d.Str("spec.template.spec.securityContext.seccompProfile.type"), "RuntimeDefault")

	containers := d.Input("spec.template.spec.containers").ArrayValue()
	if len(containers) != 1 {
		t.Fatalf("%d containers", len(containers))
	}
	c := mocktest.Resource{Inputs: containers[0].ObjectValue()}
	want(t, "image", c.Str("image"), testImage)
	want(t, "container port", c.Input("ports").ArrayValue()[0].ObjectValue()["containerPort"].NumberValue(), 8080)
	// The server reports the model it serves, the same fingerprint as the annotation.
	if !c.Input("env").IsArray() {
		t.Fatalf("container env %v; want MODEL_FINGERPRINT=f00d", c.Input("env"))
	}
	if env := c.Input("env").ArrayValue(); len(env) != 1 || env[0].ObjectValue()["name"].StringValue() != "MODEL_FINGERPRINT" || env[0].ObjectValue()["value"].StringValue() != "f00d" {
		t.Errorf("container env %v; want MODEL_FINGERPRINT=f00d", env)
	}
	want(t, "allowPrivilegeEscalation", c.Input("securityContext.allowPrivilegeEscalation").BoolValue(), false)
	want(t, "readOnlyRootFilesystem", c.Input("securityContext.readOnlyRootFilesystem").BoolValue(), true)
	want(t, "runAsNonRoot", c.Input("securityContext.runAsNonRoot").BoolValue(), true)
	want(t, "seccomp", c.Str("securityContext.seccompProfile.type"), "RuntimeDefault")
	drop := c.Input("securityContext.capabilities.drop").ArrayValue()
	if len(drop) != 1 || drop[0].StringValue() != "ALL" {
		t.Errorf("capabilities dropped: %v", drop)
	}
	for path, value := range map[string]string{
		"resources.requests.cpu": "250m", "resources.limits.cpu": "1",
		"resources.requests.memory": "128Mi", "resources.limits.memory": "256Mi",
		"readinessProbe.httpGet.path": "/readyz", "startupProbe.httpGet.path": "/readyz",
		"livenessProbe.httpGet.path": "/healthz",
	} {
		want(t, path, c.Str(path), value)
	}
	// A slow model gets at least two minutes to load before liveness counts.
	startup := c.Input("startupProbe").ObjectValue()
	if budget := startup["periodSeconds"].NumberValue() * startup["failureThreshold"].NumberValue(); budget < 120 {
		t.Errorf("startup probe allows %vs, want at least 120s", budget)
	}

	svc := mocks.One(t, "kubernetes:core/v1:Service")
	want(t, "service type", svc.Str("spec.type"), string(k8scorev1.ServiceTypeLoadBalancer))
	port := svc.Input("spec.ports").ArrayValue()[0].ObjectValue()
	want(t, "service port", port["port"].NumberValue(), 8080)
	want(t, "target port", port["targetPort"].StringValue(), "http")

	pdb := mocks.One(t, "kubernetes:policy/v1:PodDisruptionBudget")
	want(t, "PDB maxUnavailable", pdb.Input("spec.maxUnavailable").NumberValue(), 1)

	ns := mocks.One(t, "kubernetes:core/v1:Namespace")
	want(t, "namespace name", ns.Str("metadata.name"), "live")
	want(t, "pod security", ns.Input("metadata.labels").ObjectValue()["pod-security.kubernetes.io/enforce"].StringValue(), "restricted")
}

func TestModelServiceEndpointIsTheLoadBalancerIP(t *testing.T) {
	_, endpoint := declareService(t, devService)
	want(t, "endpoint", endpoint, "http://"+mocktest.ServiceIP+":8080")
}

func TestModelServiceWithoutAutoscalingHasNoAutoscaler(t *testing.T) {
	mocks, _ := declareService(t, devService)
	if n := len(mocks.OfType("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")); n != 0 {
		t.Errorf("%d HorizontalPodAutoscalers with autoscaling off", n)
	}
}

var autoscaledService = func() ModelServiceArgs {
	s := devService
	s.Replicas = 7 // not applied with autoscaling
	s.Autoscaling = &Autoscaling{MinReplicas: 3, MaxReplicas: 8, TargetCPUUtilization: 65, ScaleDownStabilizationSeconds: 120}
	return s
}()

func TestModelServiceAutoscalerOwnsTheReplicaCount(t *testing.T) {
	mocks, _ := declareService(t, autoscaledService)
	requireParented(t, mocks, "mlops:infra:ModelService")

	// The Deployment must not send spec.replicas, or server-side apply
	// would own it and conflict with (or reset) the autoscaler's count.
	d := mocks.One(t, "kubernetes:apps/v1:Deployment")
	if r, ok := d.Input("spec").ObjectValue()["replicas"]; ok {
		t.Errorf("the Deployment sends spec.replicas = %v with autoscaling on", r)
	}

	hpa := mocks.One(t, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
	want(t, "HPA namespace", hpa.Str("metadata.namespace"), "live")
	want(t, "HPA name", hpa.Str("metadata.name"), "planet-classifier")
	want(t, "target apiVersion", hpa.Str("spec.scaleTargetRef.apiVersion"), "apps/v1")
	want(t, "target kind", hpa.Str("spec.scaleTargetRef.kind"), "Deployment")
	want(t, "target name", hpa.Str("spec.scaleTargetRef.name"), "planet-classifier")
	want(t, "minReplicas", hpa.Input("spec.minReplicas").NumberValue(), 3)
	want(t, "maxReplicas", hpa.Input("spec.maxReplicas").NumberValue(), 8)
	metrics := hpa.Input("spec.metrics").ArrayValue()
	if len(metrics) != 1 {
		t.Fatalf("%d metrics, want the CPU one", len(metrics))
	}
	m := mocktest.Resource{Inputs: metrics[0].ObjectValue()}
	want(t, "metric type", m.Str("type"), "Resource")
	want(t, "metric resource", m.Str("resource.name"), "cpu")
	want(t, "target type", m.Str("resource.target.type"), "Utilization")
	want(t, "averageUtilization", m.Input("resource.target.averageUtilization").NumberValue(), 65)
	want(t, "scale-down stabilization", hpa.Input("spec.behavior.scaleDown.stabilizationWindowSeconds").NumberValue(), 120)
	if hpa.Input("spec.behavior.scaleUp").IsObject() {
		t.Errorf("scale-up is slowed down: %v", hpa.Input("spec.behavior.scaleUp"))
	}

	pdb := mocks.One(t, "kubernetes:policy/v1:PodDisruptionBudget")
	want(t, "PDB maxUnavailable", pdb.Input("spec.maxUnavailable").NumberValue(), 1)
}

func TestModelServiceDisruptionBudgetFollowsMinReplicas(t *testing.T) {
	s := autoscaledService
	autoscaling := *s.Autoscaling // a copy: autoscaledService stays as it is
	autoscaling.MinReplicas, s.Replicas = 1, 3
	s.Autoscaling = &autoscaling
	mocks, _ := declareService(t, s)
	if n := len(mocks.OfType("kubernetes:policy/v1:PodDisruptionBudget")); n != 0 {
		t.Errorf("%d PodDisruptionBudgets with minReplicas 1: it would block node drains at the floor", n)
	}
	mocks.One(t, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
}

func TestModelServiceWithOneReplicaHasNoDisruptionBudget(t *testing.T) {
	s := devService
	s.Replicas, s.ServiceType, s.Port = 1, ServiceClusterIP, 9000
	mocks, endpoint := declareService(t, s)
	if n := len(mocks.OfType("kubernetes:policy/v1:PodDisruptionBudget")); n != 0 {
		t.Errorf("%d PodDisruptionBudgets with one replica: it would block node drains", n)
	}
	want(t, "endpoint", endpoint, "http://planet-classifier.live.svc.cluster.local:9000")
	want(t, "service type", mocks.One(t, "kubernetes:core/v1:Service").Str("spec.type"), string(k8scorev1.ServiceTypeClusterIP))
}

// The Service types are spelled as Kubernetes spells them: the Service
// takes the value as it is.
func TestServiceTypesAreKubernetesServiceTypes(t *testing.T) {
	for ours, theirs := range map[ServiceType]k8scorev1.ServiceType{
		ServiceLoadBalancer: k8scorev1.ServiceTypeLoadBalancer,
		ServiceNodePort:     k8scorev1.ServiceTypeNodePort,
		ServiceClusterIP:    k8scorev1.ServiceTypeClusterIP,
	} {
		want(t, "service type", string(ours), string(theirs))
	}
}
