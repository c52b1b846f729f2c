package infra

import (
	"fmt"

	appsv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apps/v1"
	autoscalingv2 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/autoscaling/v2"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	policyv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/policy/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// FingerprintAnnotation carries the model fingerprint on the pod template: a
// new model changes the template, which is what makes Kubernetes roll.
const FingerprintAnnotation = "mlops.planets/model-fingerprint"

// serverPort is where the model server listens in its container; the
// Service maps the configured port onto it.
const serverPort = 8080

// nonRootUID is distroless's "nonroot" user, the one the image runs as.
const nonRootUID = 65532

// ModelService runs the model server: a namespace, a Deployment that rolls
// safely, a Service in front of it, with autoscaling a
// HorizontalPodAutoscaler and, with more than one replica (at least), a
// PodDisruptionBudget.
type ModelService struct {
	pulumi.ResourceState

	// Namespace is the model's namespace.
	Namespace  *corev1.Namespace
	Deployment *appsv1.Deployment
	Service    *corev1.Service
	// Endpoint is the URL to call: http://<load balancer IP>:<port> for a
	// LoadBalancer, the in-cluster DNS name otherwise.
	Endpoint pulumi.StringOutput
}

// ServiceType is the Kubernetes Service type in front of the model server.
type ServiceType string

const (
	// ServiceLoadBalancer is reached from outside the cluster at the load
	// balancer's address (on GKE, a public IP).
	ServiceLoadBalancer ServiceType = "LoadBalancer"
	// ServiceNodePort is reached at a port of every node.
	ServiceNodePort ServiceType = "NodePort"
	// ServiceClusterIP is reached from inside the cluster only.
	ServiceClusterIP ServiceType = "ClusterIP"
)

// ModelServiceArgs are the inputs of ModelService.
type ModelServiceArgs struct {
	// Namespace is the model's namespace, which the component creates.
	Namespace string
	// Name names the Deployment, the Service, the autoscaler and the
	// disruption budget, and is their app.kubernetes.io/name label.
	Name string
	// Replicas is the fixed number of pods without Autoscaling.
	Replicas int
	// Autoscaling lets a HorizontalPodAutoscaler keep the pod count; nil
	// keeps it at Replicas.
	Autoscaling *Autoscaling
	// Resources are the model server container's requests and limits.
	Resources Resources
	// ServiceType and Port are the Service's type and port.
	ServiceType ServiceType
	Port        int
	// ProgressDeadlineSeconds bounds a rollout that makes no progress.
	ProgressDeadlineSeconds int
	// Image is the model server image pinned by digest.
	Image pulumi.StringInput
	// Fingerprint is the model fingerprint (ModelImage.Fingerprint).
	Fingerprint pulumi.StringInput
	// LoadBalancerIP is a static address reserved for the LoadBalancer
	// (on GKE, EndpointAddress); nil lets the cloud pick an ephemeral one.
	LoadBalancerIP pulumi.StringInput
}

// Autoscaling is how the HorizontalPodAutoscaler sizes the Deployment.
type Autoscaling struct {
	// MinReplicas and MaxReplicas bound the pod count.
	MinReplicas, MaxReplicas int
	// TargetCPUUtilization is the average CPU use, in percent of the CPU
	// request, the autoscaler keeps the pods at.
	TargetCPUUtilization int
	// ScaleDownStabilizationSeconds is how long the autoscaler remembers
	// its highest recommendation before it removes pods, so that a bursty
	// load does not make it flap.
	ScaleDownStabilizationSeconds int
}

// Resources are the model server container's CPU and memory, each a
// Kubernetes quantity such as 250m, 1, 128Mi or 1Gi.
type Resources struct {
	CPURequest, CPULimit       string
	MemoryRequest, MemoryLimit string
}

// NewModelService declares the workload. Pass the cluster's provider with
// pulumi.Provider or pulumi.Providers; children inherit it.
func NewModelService(ctx *pulumi.Context, name string, args *ModelServiceArgs, opts ...pulumi.ResourceOption) (*ModelService, error) {
	c := &ModelService{}
	if err := ctx.RegisterComponentResource("mlops:infra:ModelService", name, c, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(c)

	ns, err := corev1.NewNamespace(ctx, name+"-namespace", &corev1.NamespaceArgs{
		Metadata: &metav1.ObjectMetaArgs{
			Name: pulumi.String(args.Namespace),
			// The model server needs nothing a restricted pod cannot have.
			Labels: pulumi.StringMap{"pod-security.kubernetes.io/enforce": pulumi.String("restricted")},
		},
	}, parent)
	if err != nil {
		return nil, err
	}
	c.Namespace = ns

	labels := pulumi.StringMap{
		"app.kubernetes.io/name":       pulumi.String(args.Name),
		"app.kubernetes.io/component":  pulumi.String("model-server"),
		"app.kubernetes.io/managed-by": pulumi.String("pulumi"),
	}
	selector := pulumi.StringMap{"app.kubernetes.io/name": pulumi.String(args.Name)}
	metadata := &metav1.ObjectMetaArgs{Name: pulumi.String(args.Name), Namespace: ns.Metadata.Name(), Labels: labels}

	// With autoscaling, the Deployment leaves spec.replicas out: the
	// provider applies server-side, and a field this program does not send
	// is a field its field manager does not own. The autoscaler sets it
	// through the scale subresource (field manager kube-controller-manager),
	// so an `up`, a model rollout included, neither resets the count nor
	// meets the "conflict with kube-controller-manager with subresource
	// scale: .spec.replicas" that sending it would give once the autoscaler
	// has scaled (pulumi-kubernetes #2491, #2569). A new Deployment starts
	// at Kubernetes' default of 1 and the autoscaler raises it to
	// MinReplicas at once.
	var replicas pulumi.IntPtrInput
	if args.Autoscaling == nil {
		replicas = pulumi.Int(args.Replicas)
	}
	c.Deployment, err = appsv1.NewDeployment(ctx, name, &appsv1.DeploymentArgs{
		Metadata: metadata,
		Spec: &appsv1.DeploymentSpecArgs{
			Replicas:             replicas,
			RevisionHistoryLimit: pulumi.Int(5),
			// A model that never becomes ready fails the update after this,
			// while the old pods keep serving.
			ProgressDeadlineSeconds: pulumi.Int(args.ProgressDeadlineSeconds),
			MinReadySeconds:         pulumi.Int(5),
			Selector:                &metav1.LabelSelectorArgs{MatchLabels: selector},
			Strategy: &appsv1.DeploymentStrategyArgs{
				Type: pulumi.String("RollingUpdate"),
				// Never fewer ready pods than asked for: a new pod must be
				// ready before an old one goes.
				RollingUpdate: &appsv1.RollingUpdateDeploymentArgs{
					MaxUnavailable: pulumi.Int(0),
					MaxSurge:       pulumi.Int(1),
				},
			},
			Template: &corev1.PodTemplateSpecArgs{
				Metadata: &metav1.ObjectMetaArgs{
					Labels:      labels,
					Annotations: pulumi.StringMap{FingerprintAnnotation: args.Fingerprint},
				},
				Spec: podSpec(args),
			},
		},
	}, parent, pulumi.Timeouts(rolloutTimeouts(args.ProgressDeadlineSeconds)))
	if err != nil {
		return nil, err
	}

	serviceSpec := &corev1.ServiceSpecArgs{
		Type:     pulumi.String(string(args.ServiceType)),
		Selector: selector,
		Ports: corev1.ServicePortArray{&corev1.ServicePortArgs{
			Name:       pulumi.String("http"),
			Port:       pulumi.Int(args.Port),
			TargetPort: pulumi.String("http"),
			Protocol:   pulumi.String("TCP"),
		}},
	}
	if args.ServiceType == ServiceLoadBalancer && args.LoadBalancerIP != nil {
		// Deprecated upstream in favour of per-implementation annotations,
		// but it is how GKE's external passthrough load balancer takes a
		// reserved regional address, and the address outlives the Service.
		serviceSpec.LoadBalancerIP = args.LoadBalancerIP
	}
	c.Service, err = corev1.NewService(ctx, name, &corev1.ServiceArgs{
		Metadata: metadata,
		Spec:     serviceSpec,
	}, parent, pulumi.Timeouts(&pulumi.CustomTimeouts{Create: "15m", Update: "15m"}))
	if err != nil {
		return nil, err
	}

	if args.Autoscaling != nil {
		if _, err := autoscalingv2.NewHorizontalPodAutoscaler(ctx, name, &autoscalingv2.HorizontalPodAutoscalerArgs{
			Metadata: metadata,
			Spec:     autoscalerSpec(args.Autoscaling, c.Deployment.Metadata.Name().Elem()),
		}, parent); err != nil {
			return nil, err
		}
	}

	// The budget follows the floor of the pod count: with one pod it would
	// block every node drain. maxUnavailable (not a fixed minAvailable)
	// keeps it right at any count the autoscaler picks: at MinReplicas a
	// drain takes one pod at a time, as without autoscaling, and when
	// scaled out under load it still takes only one.
	floor := args.Replicas
	if args.Autoscaling != nil {
		floor = args.Autoscaling.MinReplicas
	}
	if floor > 1 {
		if _, err := policyv1.NewPodDisruptionBudget(ctx, name, &policyv1.PodDisruptionBudgetArgs{
			Metadata: metadata,
			Spec: &policyv1.PodDisruptionBudgetSpecArgs{
				MaxUnavailable: pulumi.Int(1),
				Selector:       &metav1.LabelSelectorArgs{MatchLabels: selector},
			},
		}, parent); err != nil {
			return nil, err
		}
	}

	if args.ServiceType == ServiceLoadBalancer {
		ingress := c.Service.Status.LoadBalancer().Ingress().Index(pulumi.Int(0))
		c.Endpoint = pulumi.Sprintf("http://%s:%d", ingress.Ip().Elem(), args.Port)
	} else {
		c.Endpoint = pulumi.Sprintf("http://%s.%s.svc.cluster.local:%d", args.Name, args.Namespace, args.Port)
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"endpoint": c.Endpoint})
}

// autoscalerSpec keeps the Deployment named deployment between MinReplicas
// and MaxReplicas pods at the target CPU use. Scale-up uses Kubernetes'
// defaults (no stabilisation: a load gets pods as soon as it is measured);
// scale-down waits out the stabilisation window.
func autoscalerSpec(a *Autoscaling, deployment pulumi.StringInput) *autoscalingv2.HorizontalPodAutoscalerSpecArgs {
	return &autoscalingv2.HorizontalPodAutoscalerSpecArgs{
		ScaleTargetRef: &autoscalingv2.CrossVersionObjectReferenceArgs{
			ApiVersion: pulumi.String("apps/v1"),
			Kind:       pulumi.String("Deployment"),
			Name:       deployment,
		},
		MinReplicas: pulumi.Int(a.MinReplicas),
		MaxReplicas: pulumi.Int(a.MaxReplicas),
		Metrics: autoscalingv2.MetricSpecArray{&autoscalingv2.MetricSpecArgs{
			Type: pulumi.String("Resource"),
			Resource: &autoscalingv2.ResourceMetricSourceArgs{
				Name: pulumi.String("cpu"),
				Target: &autoscalingv2.MetricTargetArgs{
					Type:               pulumi.String("Utilization"),
					AverageUtilization: pulumi.Int(a.TargetCPUUtilization),
				},
			},
		}},
		Behavior: &autoscalingv2.HorizontalPodAutoscalerBehaviorArgs{
			ScaleDown: &autoscalingv2.HPAScalingRulesArgs{
				StabilizationWindowSeconds: pulumi.Int(a.ScaleDownStabilizationSeconds),
			},
		},
	}
}

// ServerRestrictions is what the model server's container may do and use,
// as its pod spec sets it. The pod spec below is written from it, and the
// image test (internal/localcloud/modelimage) runs the built image with
// exactly these under Docker, so the two cannot drift apart.
type ServerRestrictions struct {
	// UID and GID the container runs as (distroless's nonroot).
	UID, GID                 int
	ReadOnlyRootFilesystem   bool
	AllowPrivilegeEscalation bool
	// DropCapabilities are dropped; none is added.
	DropCapabilities []string
	// SeccompProfile is the Kubernetes profile type: RuntimeDefault is the
	// container runtime's default profile.
	SeccompProfile string
	// AutomountServiceAccountToken false: no API token in the container.
	AutomountServiceAccountToken bool
	// CPULimit and MemoryLimit are Kubernetes quantities, such as 1 and 256Mi.
	CPULimit, MemoryLimit string
	// Port is the container port the server listens on.
	Port int
	// StartupProbe is the budget a new server has to answer Path with 200:
	// FailureThreshold probes, PeriodSeconds apart.
	StartupProbe ProbeBudget
}

// ProbeBudget is an HTTP probe's path and timing.
type ProbeBudget struct {
	Path                                            string
	PeriodSeconds, FailureThreshold, TimeoutSeconds int
}

// Restrictions are the model server's restrictions with the container
// resources r (of which only the limits restrict).
func Restrictions(r Resources) ServerRestrictions {
	return ServerRestrictions{
		UID:                          nonRootUID,
		GID:                          nonRootUID,
		ReadOnlyRootFilesystem:       true,
		AllowPrivilegeEscalation:     false,
		DropCapabilities:             []string{"ALL"},
		SeccompProfile:               "RuntimeDefault",
		AutomountServiceAccountToken: false,
		CPULimit:                     r.CPULimit,
		MemoryLimit:                  r.MemoryLimit,
		Port:                         serverPort,
		// Startup allows a slow model two minutes to load.
		StartupProbe: ProbeBudget{Path: "/readyz", PeriodSeconds: 2, FailureThreshold: 60, TimeoutSeconds: 2},
	}
}

// rolloutTimeouts bound how long `up` waits for the Deployment. The
// Kubernetes provider only logs a rollout's ProgressDeadlineExceeded and
// keeps waiting for its own timeout, so that timeout follows the deadline:
// half as long again (the default 600 s deadline gives 15 minutes), long
// enough for a rollout that progresses, short after one that is stuck.
func rolloutTimeouts(progressDeadlineSeconds int) *pulumi.CustomTimeouts {
	timeout := fmt.Sprintf("%ds", progressDeadlineSeconds*3/2)
	return &pulumi.CustomTimeouts{Create: timeout, Update: timeout}
}

// podSpec is the model server's pod: hardened, probed, bounded.
func podSpec(args *ModelServiceArgs) *corev1.PodSpecArgs {
	r := Restrictions(args.Resources)
	return &corev1.PodSpecArgs{
		// The server calls no Kubernetes API: no token to steal.
		AutomountServiceAccountToken: pulumi.Bool(r.AutomountServiceAccountToken),
		EnableServiceLinks:           pulumi.Bool(false),
		// In-flight requests finish within the server's own grace period
		// (under this), after the preStop pause lets endpoints update.
		TerminationGracePeriodSeconds: pulumi.Int(30),
		SecurityContext: &corev1.PodSecurityContextArgs{
			RunAsNonRoot:   pulumi.Bool(true),
			RunAsUser:      pulumi.Int(r.UID),
			RunAsGroup:     pulumi.Int(r.GID),
			SeccompProfile: &corev1.SeccompProfileArgs{Type: pulumi.String(r.SeccompProfile)},
		},
		// Spread replicas over nodes so one node going away leaves one serving.
		TopologySpreadConstraints: corev1.TopologySpreadConstraintArray{&corev1.TopologySpreadConstraintArgs{
			MaxSkew:           pulumi.Int(1),
			TopologyKey:       pulumi.String("kubernetes.io/hostname"),
			WhenUnsatisfiable: pulumi.String("ScheduleAnyway"),
			LabelSelector:     &metav1.LabelSelectorArgs{MatchLabels: pulumi.StringMap{"app.kubernetes.io/name": pulumi.String(args.Name)}},
		}},
		Containers: corev1.ContainerArray{&corev1.ContainerArgs{
			Name:            pulumi.String("model-server"),
			Image:           args.Image,
			ImagePullPolicy: pulumi.String("IfNotPresent"),
			// The server reports the fingerprint (/readyz, and a header on
			// /predict): the deploy check compares it with the stack's.
			Env: corev1.EnvVarArray{&corev1.EnvVarArgs{Name: pulumi.String("MODEL_FINGERPRINT"), Value: args.Fingerprint}},
			Ports: corev1.ContainerPortArray{&corev1.ContainerPortArgs{
				Name: pulumi.String("http"), ContainerPort: pulumi.Int(r.Port), Protocol: pulumi.String("TCP"),
			}},
			Resources: &corev1.ResourceRequirementsArgs{
				Requests: pulumi.StringMap{"cpu": pulumi.String(args.Resources.CPURequest), "memory": pulumi.String(args.Resources.MemoryRequest)},
				Limits:   pulumi.StringMap{"cpu": pulumi.String(r.CPULimit), "memory": pulumi.String(r.MemoryLimit)},
			},
			// After startup, readiness takes a pod out of the Service and
			// liveness restarts a wedged one.
			StartupProbe:   probe(r.StartupProbe),
			ReadinessProbe: probe(ProbeBudget{Path: "/readyz", PeriodSeconds: 5, FailureThreshold: 3, TimeoutSeconds: 2}),
			LivenessProbe:  probe(ProbeBudget{Path: "/healthz", PeriodSeconds: 10, FailureThreshold: 3, TimeoutSeconds: 2}),
			// Let the load balancer and endpoints drop the pod before the
			// server stops accepting requests.
			Lifecycle: &corev1.LifecycleArgs{PreStop: &corev1.LifecycleHandlerArgs{
				Sleep: &corev1.SleepActionArgs{Seconds: pulumi.Int(5)},
			}},
			SecurityContext: &corev1.SecurityContextArgs{
				AllowPrivilegeEscalation: pulumi.Bool(r.AllowPrivilegeEscalation),
				ReadOnlyRootFilesystem:   pulumi.Bool(r.ReadOnlyRootFilesystem),
				RunAsNonRoot:             pulumi.Bool(true),
				Privileged:               pulumi.Bool(false),
				Capabilities:             &corev1.CapabilitiesArgs{Drop: pulumi.ToStringArray(r.DropCapabilities)},
				SeccompProfile:           &corev1.SeccompProfileArgs{Type: pulumi.String(r.SeccompProfile)},
			},
		}},
	}
}

func probe(b ProbeBudget) *corev1.ProbeArgs {
	return &corev1.ProbeArgs{
		HttpGet:          &corev1.HTTPGetActionArgs{Path: pulumi.String(b.Path), Port: pulumi.String("http")},
		PeriodSeconds:    pulumi.Int(b.PeriodSeconds),
		FailureThreshold: pulumi.Int(b.FailureThreshold),
		TimeoutSeconds:   pulumi.Int(b.TimeoutSeconds),
	}
}
