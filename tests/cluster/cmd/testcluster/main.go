// Command testcluster runs a single-machine Kubernetes control plane for
// integration tests: embedded etcd, kube-apiserver, kube-controller-manager
// and kube-scheduler, all in this one process, listening on 127.0.0.1 only.
//
// Usage: testcluster run DIR
//
// DIR holds everything (certificates, ports, etcd data, kubeconfigs) and is
// reused as is when the process is started again, which is how tests
// "restart the control plane". The tests/cluster/up script daemonizes this.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/rest"
	cliflag "k8s.io/component-base/cli/flag"
	basecompatibility "k8s.io/component-base/compatibility"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"

	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	scheduleroptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

func main() {
	if len(os.Args) != 3 || os.Args[1] != "run" {
		fmt.Fprintln(os.Stderr, "usage: testcluster run DIR")
		os.Exit(2)
	}
	if err := run(os.Args[2]); err != nil {
		klog.ErrorS(err, "testcluster failed")
		klog.Flush()
		os.Exit(1)
	}
}

// parseInto parses args into the named flag sets of one component, the same
// way its cobra command would.
func parseInto(component string, nfs cliflag.NamedFlagSets, args []string) error {
	fs := pflag.NewFlagSet(component, pflag.ContinueOnError)
	for _, f := range nfs.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s flags: %w", component, err)
	}
	return nil
}

func run(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for _, sub := range []string{"logs", "etcd", "pki"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	pki := pkiPaths{dir: filepath.Join(dir, "pki")}
	if err := ensurePKI(pki); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	p, err := loadOrPickPorts(dir)
	if err != nil {
		return fmt.Errorf("ports: %w", err)
	}
	server := "https://127.0.0.1:" + strconv.Itoa(p.APIServer)
	adminKubeconfig := filepath.Join(dir, "kubeconfig")
	kcmKubeconfig := filepath.Join(dir, "controller-manager.kubeconfig")
	schedulerKubeconfig := filepath.Join(dir, "scheduler.kubeconfig")
	for path, id := range map[string]clientIdentity{
		adminKubeconfig:     adminIdentity,
		kcmKubeconfig:       kcmIdentity,
		schedulerKubeconfig: schedulerIdentity,
	} {
		if err := writeKubeconfig(path, server, pki, id); err != nil {
			return fmt.Errorf("kubeconfig: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "testcluster.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}

	// One context for everything: SIGTERM/SIGINT stop all components. The
	// upstream commands each install their own signal handler, which may only
	// happen once per process, so they are bypassed here.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// The loopback clients of all components would otherwise log warnings
	// about deprecated APIs they watch on purpose.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})

	etcd, err := startEtcd(filepath.Join(dir, "etcd"), p)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Close()

	// Build every component's options before any feature gate is frozen:
	// all three share the process-wide component globals registry.
	apiserverOpts := apiserveroptions.NewServerRunOptions()
	kcmOpts, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	schedulerOpts := scheduleroptions.NewOptions()

	componentErr := make(chan error, 3)

	apiserverDone, err := startAPIServer(ctx, apiserverOpts, dir, pki, p, componentErr)
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	// The controller-manager and scheduler would retry on their own, but
	// starting them against a ready apiserver keeps the log free of noise.
	if err := waitForReadyz(ctx, server, pki, 2*time.Minute, componentErr); err != nil {
		return fmt.Errorf("kube-apiserver never became ready: %w", err)
	}
	klog.InfoS("testcluster: kube-apiserver ready", "server", server)

	if err := startControllerManager(ctx, kcmOpts, kcmKubeconfig, pki, componentErr); err != nil {
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	if err := startScheduler(ctx, schedulerOpts, schedulerKubeconfig, componentErr); err != nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	klog.InfoS("testcluster: all components started")

	select {
	case <-ctx.Done():
		klog.InfoS("testcluster: shutting down")
		// etcd (closed by the defer) must outlive the apiserver, or the
		// apiserver's shutdown floods the log with connection errors.
		select {
		case <-apiserverDone:
		case <-time.After(15 * time.Second):
			klog.InfoS("testcluster: kube-apiserver did not stop within 15s, exiting anyway")
		}
		return nil
	case err := <-componentErr:
		return err
	case err := <-etcd.Err():
		return fmt.Errorf("etcd: %w", err)
	}
}

func startEtcd(dataDir string, p ports) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "testcluster"
	cfg.Dir = dataDir
	clientURL, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(p.EtcdClient))
	peerURL, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(p.EtcdPeer))
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// etcd's own warnings (slow applies on a busy machine) drown the
	// apiserver's log and are not actionable in tests.
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{"stderr"}
	// NewConfig leaves this at 0 (only the CLI flag has a default), which
	// logs every single request as "expensive".
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	// No fsync: a killed process loses nothing (the page cache survives it),
	// only a machine crash would, and test data does not need to survive
	// that. Saves a lot of time on slow disks.
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case <-time.After(time.Minute):
		e.Close()
		return nil, errors.New("etcd did not become ready within 1m")
	}
}

// startAPIServer starts kube-apiserver in the background; the returned
// channel is closed once it has stopped.
func startAPIServer(ctx context.Context, s *apiserveroptions.ServerRunOptions, dir string, pki pkiPaths, p ports, errc chan<- error) (<-chan struct{}, error) {
	args := []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(p.EtcdClient),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(p.APIServer),
		"--cert-dir=" + filepath.Join(dir, "pki", "apiserver-generated"),
		"--tls-cert-file=" + pki.servingCert(),
		"--tls-private-key-file=" + pki.servingKey(),
		"--client-ca-file=" + pki.caCert(),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki.saPub(),
		"--service-account-signing-key-file=" + pki.saKey(),
		"--service-cluster-ip-range=" + serviceClusterIPRange,
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		// Upstream default admission chain plus NodeRestriction (as kubeadm
		// does). TaintNodesByCondition is off: it taints every new Node
		// not-ready:NoSchedule and only the node-lifecycle controller (off
		// here, there is no kubelet) would remove the taint again.
		"--enable-admission-plugins=NodeRestriction",
		"--disable-admission-plugins=TaintNodesByCondition",
		// Nothing keeps the "kubernetes" Endpoints current without this, and
		// nothing in-cluster needs them (no kube-proxy).
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
	if err := parseInto("kube-apiserver", s.Flags(), args); err != nil {
		return nil, err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, err
	}
	// Logging is process-wide; the apiserver's options configure it once.
	featureGate := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	if err := logsapi.ValidateAndApply(s.Logs, featureGate); err != nil {
		return nil, err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return nil, err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return nil, utilerrors.NewAggregate(errs)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := apiserverapp.Run(ctx, completed)
		if ctx.Err() == nil {
			errc <- fmt.Errorf("kube-apiserver exited: %v", err)
		}
	}()
	return done, nil
}

func startControllerManager(ctx context.Context, s *kcmoptions.KubeControllerManagerOptions, kubeconfig string, pki pkiPaths, errc chan<- error) error {
	nfs := s.Flags(kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases())
	s.ParsedFlags = &nfs
	args := []string{
		"--kubeconfig=" + kubeconfig,
		// Serving /healthz is not needed; 0 disables the secure port.
		"--secure-port=0",
		// Single instance: leader election would only delay a restart until
		// the previous lease expires.
		"--leader-elect=false",
		// Each controller gets its own ServiceAccount, as in a real cluster,
		// so RBAC is exercised for them too.
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + pki.saKey(),
		"--root-ca-file=" + pki.caCert(),
		// Let the CSR signer issue certificates from the same CA.
		"--cluster-signing-cert-file=" + pki.caCert(),
		"--cluster-signing-key-file=" + pki.caKey(),
		// Fake Nodes have no kubelet posting status: the node-lifecycle
		// controller would mark them NotReady and evict their pods. Cloud
		// controllers are skipped automatically (no cloud provider).
		"--controllers=*,-node-lifecycle-controller",
	}
	if err := parseInto("kube-controller-manager", nfs, args); err != nil {
		return err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	c, err := s.Config(ctx, kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases())
	if err != nil {
		return err
	}
	go func() {
		err := kcmapp.Run(ctx, c.Complete())
		if ctx.Err() == nil {
			errc <- fmt.Errorf("kube-controller-manager exited: %v", err)
		}
	}()
	return nil
}

func startScheduler(ctx context.Context, opts *scheduleroptions.Options, kubeconfig string, errc chan<- error) error {
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--secure-port=0",
		"--leader-elect=false",
	}
	if err := parseInto("kube-scheduler", *opts.Flags, args); err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	cc, sched, err := schedulerapp.Setup(ctx, opts)
	if err != nil {
		return err
	}
	go func() {
		err := schedulerapp.Run(ctx, cc, sched)
		if ctx.Err() == nil {
			errc <- fmt.Errorf("kube-scheduler exited: %v", err)
		}
	}()
	return nil
}

// waitForReadyz polls the apiserver's /readyz with the admin identity.
func waitForReadyz(ctx context.Context, server string, pki pkiPaths, timeout time.Duration, errc <-chan error) error {
	caPEM, err := os.ReadFile(pki.caCert())
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(pki.file(adminIdentity.fileBase+".crt"), pki.file(adminIdentity.fileBase+".key"))
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs:      pool,
			Certificates: []tls.Certificate{cert},
		}},
	}
	deadline := time.Now().Add(timeout)
	lastErr := errors.New("not polled yet")
	for time.Now().Before(deadline) {
		resp, err := client.Get(server + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			lastErr = fmt.Errorf("/readyz returned %s", resp.Status)
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
	return lastErr
}
