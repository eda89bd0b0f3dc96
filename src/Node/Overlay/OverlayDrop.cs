namespace Gateway.Node.Overlay;

/// <summary>
/// Why the overlay dropped a packet. Numbers and descriptions are Cilium's drop reasons
/// (pkg/monitor/api/drop.go), so flow logs and metrics read the same as Hubble's.
/// </summary>
public enum OverlayDrop : byte
{
    None = 0,
    InvalidSourceIp = 132,
    PolicyDenied = 133,
    InvalidPacket = 134,
    UnsupportedL3Protocol = 139,
    UnknownL3TargetAddress = 150,
    /// <summary>A service VIP:port without backends (Cilium's DROP_NO_SERVICE).</summary>
    NoService = 158,
    NoTunnelEndpoint = 160,
    EncapsulationProhibited = 170,
    InvalidIdentity = 171,
    UnknownSender = 172,
    PolicyDeny = 181,
    /// <summary>Not a Cilium reason: the WireGuard layer refused the packet (see the tunnel's own reasons).</summary>
    Tunnel = 255,
}

public static class OverlayDropNames
{
    /// <summary>Hubble's enum name (flow.proto DropReason) for the reason; one table with the flow log's.</summary>
    public static string Name(OverlayDrop reason) => reason switch
    {
        OverlayDrop.None => "NONE",
        OverlayDrop.Tunnel => "TUNNEL",
        _ => Gateway.Policy.FlowEvent.DropReasonName((Gateway.Policy.DropReason)(byte)reason),
    };
}
