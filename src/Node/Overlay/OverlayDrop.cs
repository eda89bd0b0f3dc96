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
    /// <summary>Hubble's enum name (flow.proto DropReason) for the reason.</summary>
    public static string Name(OverlayDrop reason) => reason switch
    {
        OverlayDrop.InvalidSourceIp => "INVALID_SOURCE_IP",
        OverlayDrop.PolicyDenied => "POLICY_DENIED",
        OverlayDrop.InvalidPacket => "INVALID_PACKET_DROPPED",
        OverlayDrop.UnsupportedL3Protocol => "UNSUPPORTED_L3_PROTOCOL",
        OverlayDrop.UnknownL3TargetAddress => "UNKNOWN_L3_TARGET_ADDRESS",
        OverlayDrop.NoTunnelEndpoint => "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT",
        OverlayDrop.EncapsulationProhibited => "ENCAPSULATION_TRAFFIC_IS_PROHIBITED",
        OverlayDrop.InvalidIdentity => "INVALID_IDENTITY",
        OverlayDrop.UnknownSender => "UNKNOWN_SENDER",
        OverlayDrop.PolicyDeny => "POLICY_DENY",
        OverlayDrop.Tunnel => "TUNNEL",
        _ => "NONE",
    };
}
