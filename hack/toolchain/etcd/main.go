// Command etcd is etcd's own server entry point, built from the module proxy
// so the local control plane needs no downloaded release binaries.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
