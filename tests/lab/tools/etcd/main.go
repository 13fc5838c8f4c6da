// Command etcd is the lab's etcd server: etcdmain is the upstream server's whole CLI, so the
// binary behaves exactly like the released etcd of the pinned version.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
