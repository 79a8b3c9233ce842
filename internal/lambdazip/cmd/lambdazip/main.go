// Command lambdazip packs a Lambda bootstrap executable into a zip:
//
//	lambdazip BOOTSTRAP ZIP
package main

import (
	"fmt"
	"os"

	"github.com/silo-saas/silo/internal/lambdazip"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: lambdazip BOOTSTRAP ZIP")
		os.Exit(2)
	}
	if err := lambdazip.WriteFile(os.Args[2], os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "lambdazip:", err)
		os.Exit(1)
	}
}
