package packet

import (
	"strconv"
	"strings"
)

// Flags records which headers Parse found and what it noticed about them.
// A header flag means the header's bytes are inside Data and its length
// fields are consistent, so its view may be used.
type Flags uint32

const (
	FlagEthernet       Flags = 1 << iota // the 14-byte Ethernet header is present
	FlagVLAN                             // at least one 802.1Q/802.1ad tag
	FlagQinQ                             // two tags
	FlagARP                              // an ARP packet (any hardware and protocol sizes)
	FlagIPv4                             // an IPv4 header
	FlagIPv6                             // an IPv6 fixed header
	FlagIPv4Options                      // the IPv4 header is longer than 20 bytes
	FlagIPv6ExtHeaders                   // IPv6 extension headers were walked
	FlagFragment                         // an IP fragment (IPv4 MF or offset, or an IPv6 fragment header)
	FlagLaterFragment                    // a fragment other than the first: no L4 header
	FlagTCP                              // a TCP header, options included
	FlagUDP                              // a UDP header
	FlagICMP                             // an ICMP (v4) header, 8 bytes
	FlagICMPv6                           // an ICMPv6 header, 8 bytes
	FlagPadding                          // bytes after the end of the IP packet (Ethernet padding)
	FlagTruncated                        // the frame ends before a header or the length an IP header announces
	FlagMalformed                        // header fields contradict each other or the frame
	FlagUnsupported                      // something Parse does not walk (a third VLAN tag, a long IPv6 chain)
)

// FlagBad is set when the packet must not be treated as sound.
const FlagBad = FlagTruncated | FlagMalformed | FlagUnsupported

var flagNames = [...]string{
	"ethernet", "vlan", "qinq", "arp", "ipv4", "ipv6", "ipv4-options",
	"ipv6-ext", "fragment", "later-fragment", "tcp", "udp", "icmp", "icmpv6",
	"padding", "truncated", "malformed", "unsupported",
}

// String lists the set flags, separated by '|'. It allocates; keep it off
// the hot path.
func (f Flags) String() string {
	if f == 0 {
		return "0"
	}
	var s strings.Builder
	for i, name := range flagNames {
		if f&(1<<i) != 0 {
			if s.Len() > 0 {
				s.WriteByte('|')
			}
			s.WriteString(name)
			f &^= 1 << i
		}
	}
	if f != 0 {
		if s.Len() > 0 {
			s.WriteByte('|')
		}
		s.WriteString("0x" + strconv.FormatUint(uint64(f), 16))
	}
	return s.String()
}

// ErrorKind is the first problem Parse found in a packet. Each kind is
// either a truncation, a malformation or unsupported; Flags tells which.
type ErrorKind uint8

const (
	ErrNone ErrorKind = iota

	// Truncated: the frame ends too early.
	ErrEthernetTruncated // fewer than 14 bytes
	ErrVLANTruncated     // a VLAN tag is cut
	ErrARPTruncated      // the ARP header or its addresses are cut
	ErrIPv4Truncated     // fewer bytes than the IPv4 header or its total length
	ErrIPv6Truncated     // fewer bytes than 40 plus the payload length

	// Malformed: fields contradict each other.
	ErrIPv4Version       // version field is not 4
	ErrIPv4HeaderLength  // IHL < 5
	ErrIPv4TotalLength   // total length < IHL*4
	ErrIPv6Version       // version field is not 6
	ErrIPv6ExtHeader     // an extension header runs past the payload length
	ErrIPv6HopByHopOrder // a hop-by-hop header other than first
	ErrTCPHeaderLength   // data offset < 5, or the header runs past the IP payload
	ErrUDPLength         // UDP header past the IP payload, or length < 8 or past it
	ErrICMPLength        // ICMP header shorter than 8 bytes
	ErrFragmentLength    // a fragment whose payload cannot be a fragment

	// Unsupported.
	ErrVLANDepth          // more than two VLAN tags
	ErrIPv6ExtHeaderLimit // more than MaxIPv6ExtHeaders extension headers, or past MaxIPv6ExtBytes
	ErrFrameTooLong       // longer than 65535 bytes: offsets are 16-bit
)

var errorKindNames = [...]string{
	ErrNone:               "none",
	ErrEthernetTruncated:  "ethernet truncated",
	ErrVLANTruncated:      "vlan tag truncated",
	ErrARPTruncated:       "arp truncated",
	ErrIPv4Truncated:      "ipv4 truncated",
	ErrIPv6Truncated:      "ipv6 truncated",
	ErrIPv4Version:        "ipv4 bad version",
	ErrIPv4HeaderLength:   "ipv4 header length < 20",
	ErrIPv4TotalLength:    "ipv4 total length < header length",
	ErrIPv6Version:        "ipv6 bad version",
	ErrIPv6ExtHeader:      "ipv6 extension header past payload",
	ErrIPv6HopByHopOrder:  "ipv6 hop-by-hop not first",
	ErrTCPHeaderLength:    "tcp bad data offset",
	ErrUDPLength:          "udp bad length",
	ErrICMPLength:         "icmp too short",
	ErrFragmentLength:     "bad fragment length",
	ErrVLANDepth:          "more than two vlan tags",
	ErrIPv6ExtHeaderLimit: "too many ipv6 extension headers",
	ErrFrameTooLong:       "frame longer than 65535 bytes",
}

func (e ErrorKind) String() string {
	if int(e) < len(errorKindNames) {
		return errorKindNames[e]
	}
	return "error(" + strconv.Itoa(int(e)) + ")"
}

// Flag returns the summary flag of e: FlagTruncated, FlagMalformed,
// FlagUnsupported, or 0 for ErrNone.
func (e ErrorKind) Flag() Flags {
	switch {
	case e == ErrNone:
		return 0
	case e <= ErrIPv6Truncated:
		return FlagTruncated
	case e <= ErrFragmentLength:
		return FlagMalformed
	}
	return FlagUnsupported
}
