package main

// Persistent state of one test cluster: the ports it listens on and the
// kubeconfig files for the admin and for the in-process components.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

const (
	serviceClusterIPRange = "10.96.0.0/16"
	serviceClusterFirstIP = "10.96.0.1"
)

// ports are picked once and stored in DIR/ports.json: a restarted control
// plane must come back at the address already written into kubeconfigs that
// tests and agents hold.
type ports struct {
	EtcdClient int `json:"etcdClient"`
	EtcdPeer   int `json:"etcdPeer"`
	APIServer  int `json:"apiServer"`
}

// freePort asks the kernel for an unused loopback port. The port is released
// before the component binds it; the window is small and only matters for
// the very first start.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func loadOrPickPorts(dir string) (ports, error) {
	path := filepath.Join(dir, "ports.json")
	var p ports
	if data, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(data, &p); err != nil {
			return p, fmt.Errorf("parsing %s: %w", path, err)
		}
		return p, nil
	}
	seen := map[int]bool{}
	for _, dst := range []*int{&p.EtcdClient, &p.EtcdPeer, &p.APIServer} {
		for {
			port, err := freePort()
			if err != nil {
				return p, err
			}
			if !seen[port] {
				seen[port] = true
				*dst = port
				break
			}
		}
	}
	data, _ := json.MarshalIndent(p, "", "  ")
	return p, os.WriteFile(path, data, 0o644)
}

// writeKubeconfig writes a self-contained kubeconfig (certificates inlined)
// for a client-certificate identity.
func writeKubeconfig(path, server string, pki pkiPaths, id clientIdentity) error {
	read := func(name string) (string, error) {
		data, err := os.ReadFile(name)
		return base64.StdEncoding.EncodeToString(data), err
	}
	ca, err := read(pki.caCert())
	if err != nil {
		return err
	}
	cert, err := read(pki.file(id.fileBase + ".crt"))
	if err != nil {
		return err
	}
	key, err := read(pki.file(id.fileBase + ".key"))
	if err != nil {
		return err
	}
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testcluster
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: testcluster
  context:
    cluster: testcluster
    user: %s
current-context: testcluster
`, server, ca, id.user, cert, key, id.user)
	// Write then rename so a reader never sees a half-written file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
