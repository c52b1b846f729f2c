package infra

import (
	"encoding/base64"
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// gkeKubeconfig is a kubeconfig for a GKE cluster that authenticates with
// gke-gcloud-auth-plugin, as gcloud writes it: no token, so it stays the same
// from run to run and leaks nothing by itself.
func gkeKubeconfig(name, endpoint, caBase64 string) (string, error) {
	ca, err := base64.StdEncoding.DecodeString(caBase64)
	if err != nil {
		return "", fmt.Errorf("cluster CA certificate is not base64: %w", err)
	}
	kubeconfig := clientcmdapi.NewConfig()
	kubeconfig.Clusters[name] = &clientcmdapi.Cluster{
		Server:                   "https://" + endpoint,
		CertificateAuthorityData: ca,
	}
	kubeconfig.AuthInfos[name] = &clientcmdapi.AuthInfo{
		Exec: &clientcmdapi.ExecConfig{
			APIVersion:         "client.authentication.k8s.io/v1beta1",
			Command:            "gke-gcloud-auth-plugin",
			InstallHint:        "Install gke-gcloud-auth-plugin: gcloud components install gke-gcloud-auth-plugin (docs/gke.md, Prerequisites).",
			ProvideClusterInfo: true,
			InteractiveMode:    clientcmdapi.IfAvailableExecInteractiveMode,
		},
	}
	kubeconfig.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kubeconfig.CurrentContext = name
	out, err := clientcmd.Write(*kubeconfig)
	if err != nil {
		return "", fmt.Errorf("writing kubeconfig: %w", err)
	}
	return string(out), nil
}
