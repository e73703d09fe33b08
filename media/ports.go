package media

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// portPool hands out RTP/RTCP port pairs (RTP even, RTCP = RTP+1) from
// [min, max]. The cursor only moves forward, so a freed pair is reused last:
// late packets of an ended call drain into a closed port, not a new call.
type portPool struct {
	bind     netip.Addr
	min, max int

	mu   sync.Mutex
	next int
	used map[int]bool
}

func newPortPool(bind netip.Addr, min, max int) *portPool {
	if min%2 != 0 {
		min++
	}
	return &portPool{bind: bind, min: min, max: max, next: min, used: map[int]bool{}}
}

// pairs is the number of pairs in the range.
func (p *portPool) pairs() int { return (p.max - p.min + 1) / 2 }

// inUse is the number of pairs handed out.
func (p *portPool) inUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.used)
}

// alloc binds the next free pair. A pair another process holds is skipped.
func (p *portPool) alloc() (rtp, rtcp *net.UDPConn, port int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.pairs()
	for range n {
		port := p.next
		p.next += 2
		if p.next+1 > p.max {
			p.next = p.min
		}
		if p.used[port] {
			continue
		}
		rtp, err := listenUDP(p.bind, port)
		if err != nil {
			continue
		}
		rtcp, err := listenUDP(p.bind, port+1)
		if err != nil {
			rtp.Close()
			continue
		}
		p.used[port] = true
		return rtp, rtcp, port, nil
	}
	return nil, nil, 0, fmt.Errorf("%d..%d on %s: %w", p.min, p.max, p.bind, ErrNoPorts)
}

// allocExact binds one given pair (to restore a session on its ports).
func (p *portPool) allocExact(port int) (rtp, rtcp *net.UDPConn, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if port < p.min || port+1 > p.max || port%2 != 0 {
		return nil, nil, fmt.Errorf("port %d is outside %d..%d", port, p.min, p.max)
	}
	if p.used[port] {
		return nil, nil, fmt.Errorf("port %d is in use", port)
	}
	if rtp, err = listenUDP(p.bind, port); err != nil {
		return nil, nil, err
	}
	if rtcp, err = listenUDP(p.bind, port+1); err != nil {
		rtp.Close()
		return nil, nil, err
	}
	p.used[port] = true
	return rtp, rtcp, nil
}

func (p *portPool) free(port int) {
	p.mu.Lock()
	delete(p.used, port)
	p.mu.Unlock()
}

func listenUDP(a netip.Addr, port int) (*net.UDPConn, error) {
	network := "udp4"
	if a.Is6() {
		network = "udp6"
	}
	return net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(port))))
}
