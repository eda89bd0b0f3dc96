using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>Hubble's verdicts.</summary>
public enum FlowVerdict : byte
{
    Forwarded = 1,
    Dropped = 2,
    Error = 3,
}

/// <summary>Drop reasons, numbered as Cilium's (pkg/monitor/api/drop.go) and named as Hubble's
/// flow.proto, for the ones Gateway produces.</summary>
public enum DropReason : byte
{
    None = 0,
    /// <summary>133 "Policy denied": no allow rule (default deny).</summary>
    PolicyDenied = 133,
    /// <summary>181 "Policy denied by denylist": an explicit ingressDeny/egressDeny rule.</summary>
    PolicyDeny = 181,
    /// <summary>132 "Invalid source ip": the source is not an endpoint this node owns.</summary>
    InvalidSourceIp = 132,
    /// <summary>134 "Invalid packet": could not be parsed.</summary>
    InvalidPacket = 134,
    /// <summary>139 "Unsupported L3 protocol".</summary>
    UnsupportedL3Protocol = 139,
    /// <summary>150 "Unknown L3 target address": not a local endpoint.</summary>
    UnknownL3TargetAddress = 150,
    /// <summary>158 "Service backend not found": a service VIP:port without backends.</summary>
    NoService = 158,
    /// <summary>160 "No tunnel/encapsulation endpoint": no node owns the destination.</summary>
    NoTunnelEndpoint = 160,
    /// <summary>170 "Encapsulation traffic is prohibited": a workload sent to the tunnel port.</summary>
    EncapsulationProhibited = 170,
    /// <summary>171 "Invalid identity": a VNI that is no security identity.</summary>
    InvalidIdentity = 171,
    /// <summary>172 "Unknown sender": overlay traffic from an address no peer owns.</summary>
    UnknownSender = 172,
}

/// <summary>
/// One flow event: a new allowed flow or a drop. Only value types, so enqueueing copies a struct
/// and allocates nothing; names and labels are resolved when the event is serialized.
/// </summary>
public struct FlowEvent
{
    /// <summary>Unix time in nanoseconds.</summary>
    public long TimeUnixNs;
    public FlowVerdict Verdict;
    public DropReason DropReason;
    public Direction TrafficDirection;
    public bool IsReply;
    public bool Encrypted;
    public FlowKey Key;
    public uint SourceIdentity;
    public uint DestinationIdentity;
    /// <summary>The rule that decided (<see cref="PolicySnapshot.Rules"/> index), or -1.</summary>
    public int RuleId;
    /// <summary>The snapshot version the verdict came from (to find the rule again).</summary>
    public long PolicyVersion;
    /// <summary>The service ("namespace/name") the flow was addressed to, when its destination was
    /// translated from a ClusterIP to a backend (then <see cref="Key"/> holds the backend); else null.
    /// Hubble's destination_service.</summary>
    public string? DestinationService;

    public static string DropReasonName(DropReason reason) => reason switch
    {
        DropReason.PolicyDenied => "POLICY_DENIED",
        DropReason.PolicyDeny => "POLICY_DENY",
        DropReason.InvalidSourceIp => "INVALID_SOURCE_IP",
        DropReason.InvalidPacket => "INVALID_PACKET_DROPPED",
        DropReason.UnsupportedL3Protocol => "UNSUPPORTED_L3_PROTOCOL",
        DropReason.UnknownL3TargetAddress => "UNKNOWN_L3_TARGET_ADDRESS",
        DropReason.NoService => "NO_SERVICE",
        DropReason.NoTunnelEndpoint => "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT",
        DropReason.EncapsulationProhibited => "ENCAPSULATION_TRAFFIC_IS_PROHIBITED",
        DropReason.InvalidIdentity => "INVALID_IDENTITY",
        DropReason.UnknownSender => "UNKNOWN_SENDER",
        _ => "DROP_REASON_UNKNOWN",
    };
}
