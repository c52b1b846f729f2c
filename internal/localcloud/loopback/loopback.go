// Package loopback finds free TCP ports on 127.0.0.1 for the local cloud's
// daemons, which listen on loopback only.
package loopback

import (
	"fmt"
	"net"
)

// FreePorts asks the kernel for n distinct free ports on 127.0.0.1. They are
// released before the caller's daemons bind them, so another process could
// take one in between; that shows up as a clear bind error in a log.
func FreePorts(n int) ([]int, error) {
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
