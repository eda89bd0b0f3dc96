using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>Hubble's verdicts.</summary>
public enum FlowVerdict : byte
{
    Forwarded = 1,
    Dropped = 2,
    Error = 3,
}

/// <summary>Drop reasons, numbered and named as Cilium's (pkg/monitor/api/drop.go) for the ones used here.</summary>
public enum DropReason : byte
{
    None = 0,
    /// <summary>133 "Policy denied": no allow rule (default deny).</summary>
    PolicyDenied = 133,
    /// <summary>181 "Policy denied by denylist": an explicit ingressDeny/egressDeny rule.</summary>
    PolicyDeny = 181,
    /// <summary>130 "Invalid packet": could not be classified.</summary>
    InvalidPacket = 130,
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

    public static string DropReasonName(DropReason reason) => reason switch
    {
        DropReason.PolicyDenied => "POLICY_DENIED",
        DropReason.PolicyDeny => "POLICY_DENY",
        DropReason.InvalidPacket => "INVALID_PACKET",
        _ => "DROP_REASON_UNKNOWN",
    };
}
