package dradriver

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// NewClient returns a client of the API server: from kubeconfig, a
// kubeconfig file, or from the pod's service account when it is "" (the
// in-cluster configuration of a DaemonSet). It does not contact the API
// server: one that cannot be reached is retried while the drivers run.
func NewClient(kubeconfig string) (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no kubeconfig, and not running in a cluster: %w", err)
		}
	} else if cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.UserAgent = "wasmlet"
	// client-go's default, 5 requests a second, would hold up each
	// NodePrepareResources (the helper reads the claim) behind the slice
	// controller's requests; these are the kubelet's own limits.
	cfg.QPS, cfg.Burst = 50, 100
	return kubernetes.NewForConfig(cfg)
}
