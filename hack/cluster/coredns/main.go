// A CoreDNS with only the plugins the local cluster needs: the kubernetes plugin answers
// cluster names; there is deliberately no forward/proxy plugin, so a query for any other name
// is answered REFUSED here and never leaves the machine. errors/health/ready/cache are local
// helpers (logging, the pod's probes, caching) that send nothing anywhere.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

// Order matters: it is the order in which a query passes through the plugins.
var directives = []string{"errors", "health", "ready", "cache", "kubernetes"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
