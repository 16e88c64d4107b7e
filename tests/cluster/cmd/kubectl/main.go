// Command kubectl is upstream kubectl, built from the same Kubernetes release
// as the test control plane so client and server versions always match.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	// Register client auth plugins (exec, oidc), as upstream kubectl does.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	// Verbosity must be known before command construction, which may log.
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
