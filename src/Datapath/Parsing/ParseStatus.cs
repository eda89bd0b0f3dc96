namespace Gateway.Datapath;

/// <summary>
/// Outcome of parsing untrusted bytes. Everything but <see cref="Ok"/> is a drop reason the
/// caller counts (per reason) instead of throwing.
/// </summary>
public enum ParseStatus : byte
{
    Ok = 0,
    /// <summary>The span ends before a header (or its declared options) ends.</summary>
    Truncated,
    /// <summary>The capture/device link type is not one the datapath understands.</summary>
    UnsupportedLinkType,
    /// <summary>A well-formed frame that does not carry IPv4 or IPv6 (ARP, LLDP, ...).</summary>
    NotIp,
    /// <summary>More than two stacked VLAN tags (802.1Q/802.1ad).</summary>
    TooManyVlanTags,
    /// <summary>IP version nibble disagrees with the link layer (or is not 4/6), or a Geneve version != 0.</summary>
    BadVersion,
    /// <summary>IPv4 IHL &lt; 5, TCP data offset &lt; 5, or header longer than the total length.</summary>
    BadHeaderLength,
    /// <summary>IPv4 total length / IPv6 payload length smaller than the header or larger than the bytes present.</summary>
    BadTotalLength,
    /// <summary>An IPv6 extension header is malformed or out of place (hop-by-hop not first).</summary>
    BadExtensionHeader,
    /// <summary>More IPv6 extension headers than the parser walks (a resource-exhaustion guard).</summary>
    TooManyExtensionHeaders,
    /// <summary>UDP length field below 8 or beyond the IP payload; TCP data offset beyond the segment.</summary>
    BadL4Length,
    /// <summary>The packet is not a UDP datagram (expected a tunnel datagram).</summary>
    NotUdp,
    /// <summary>A VXLAN header without the I (valid VNI) flag.</summary>
    BadVxlanHeader,
    /// <summary>A Geneve header whose protocol type is not Ethernet/IPv4/IPv6.</summary>
    BadGeneveHeader,
    /// <summary>Bytes that do not have the structure of a WireGuard message.</summary>
    NotWireGuard,
}
