// Command cmd is the CDK app of the control plane, run by `cdk deploy`
// through cdk.json. Lambda zips come from dist/lambda (`make build`), or the
// directory in the SILO_LAMBDA_DIR environment variable.
package main

import (
	"fmt"
	"os"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/silo-saas/silo/cdk/controlplane"
)

func main() {
	defer jsii.Close()
	dir := os.Getenv("SILO_LAMBDA_DIR")
	if dir == "" {
		dir = controlplane.DefaultCodeDir
	}
	if err := controlplane.CheckCode(dir); err != nil {
		fmt.Fprintln(os.Stderr, "silo control plane:", err)
		os.Exit(1)
	}
	app := awscdk.NewApp(nil)
	controlplane.NewStack(app, controlplane.StackName, controlplane.Props{
		CodeDir: dir,
		Env: &awscdk.Environment{
			Account: jsii.String(os.Getenv("CDK_DEFAULT_ACCOUNT")),
			Region:  jsii.String(os.Getenv("CDK_DEFAULT_REGION")),
		},
	})
	app.Synth(nil)
}
