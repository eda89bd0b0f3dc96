using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>Which policy checks apply to a packet at this node.</summary>
[Flags]
public enum PolicyChecks : byte
{
    None = 0,
    /// <summary>The source is a local endpoint: its egress policy applies.</summary>
    Egress = 1,
    /// <summary>The destination is a local endpoint: its ingress policy applies.</summary>
    Ingress = 2,
    Both = Egress | Ingress,
}

/// <summary>The outcome of <see cref="PolicyEngine.Process"/>.</summary>
public readonly record struct FlowDecision(
    bool Allowed, CtResult Conntrack, Verdict Egress, Verdict Ingress, DropReason DropReason, uint SourceIdentity, uint DestinationIdentity);

/// <summary>
/// The policy engine a node embeds: it owns the current <see cref="PolicySnapshot"/> (replaced
/// whole by <see cref="Apply"/> / <see cref="TryLoad"/>), conntrack and the flow event ring,
/// and decides packets with <see cref="Process"/>: conntrack first (established flows, replies
/// and related ICMP errors skip policy), then egress at the source and ingress at the
/// destination; allowed new flows get a conntrack entry; new flows and drops produce events.
/// </summary>
public sealed class PolicyEngine
{
    private PolicySnapshot _current;
    private readonly TimeProvider _time;

    public PolicyEngine(IdentityAllocator identities, Conntrack conntrack, FlowEventRing events, TimeProvider? time = null)
    {
        Identities = identities ?? throw new ArgumentNullException(nameof(identities));
        Conntrack = conntrack ?? throw new ArgumentNullException(nameof(conntrack));
        Events = events ?? throw new ArgumentNullException(nameof(events));
        _time = time ?? TimeProvider.System;
        _current = PolicyCompiler.Compile(PolicySet.Empty, new EndpointTable(identities));
    }

    public IdentityAllocator Identities { get; }

    /// <summary>Marks the flow events of this engine as encrypted (a node whose workload traffic
    /// only ever crosses the underlay inside WireGuard).</summary>
    public bool EventsEncrypted { get; set; }
    public Conntrack Conntrack { get; }
    public FlowEventRing Events { get; }

    /// <summary>The snapshot in force. Read it once per packet batch and use that reference.</summary>
    public PolicySnapshot Current => Volatile.Read(ref _current);

    /// <summary>Compiles and swaps in a new state with one reference write.</summary>
    public PolicySnapshot Apply(PolicySet policies, EndpointTable endpoints)
    {
        var snapshot = PolicyCompiler.Compile(policies, endpoints);
        Volatile.Write(ref _current, snapshot);
        return snapshot;
    }

    /// <summary>
    /// Loads policy files (a file or folder) and an endpoints file and swaps them in. On any
    /// error the previous snapshot stays in force and the one-line error is returned.
    /// </summary>
    public bool TryLoad(string policyPath, string endpointsPath, out string? error)
    {
        ArgumentNullException.ThrowIfNull(policyPath);
        ArgumentNullException.ThrowIfNull(endpointsPath);
        try
        {
            var endpoints = EndpointFile.Load(endpointsPath, Identities);
            var policies = PolicyLoader.Load(policyPath);
            Apply(policies, endpoints);
            error = null;
            return true;
        }
        catch (Exception e) when (e is PolicyLoadException or IOException or UnauthorizedAccessException or InvalidDataException)
        {
            error = e.Message;
            return false;
        }
    }

    /// <summary>
    /// Decides one packet. <paramref name="sourceIdentity"/> overrides the ipcache for the source
    /// (e.g. the identity carried in the VXLAN VNI); 0 means look it up. For a packet a service
    /// translated, <paramref name="destinationService"/> ("namespace/name") goes into the flow
    /// event, as Hubble's destination_service. Allocation-free (the name is the service table's string).
    /// With <paramref name="destinationIdentityOnHit"/> false, a packet of a tracked flow (Established
    /// or Reply) skips the ipcache lookup of its destination and its decision carries
    /// <see cref="FlowDecision.DestinationIdentity"/> 0: for callers that read no identity of an
    /// established flow but the source's (the overlay, for the VNI). New flows and drops are decided
    /// and reported the same either way.
    /// </summary>
    public FlowDecision Process(in FlowKey key, long nowNs, PolicyChecks checks = PolicyChecks.Both, uint sourceIdentity = 0, string? destinationService = null,
        bool destinationIdentityOnHit = true)
    {
        var snapshot = Current;
        var ct = Conntrack.Lookup(key, nowNs);
        uint src = sourceIdentity != 0 ? sourceIdentity : snapshot.IpCache.Lookup(key.Source);
        if (ct is CtResult.Established or CtResult.Reply)
        {
            uint hitDestination = destinationIdentityOnHit ? snapshot.IpCache.Lookup(key.Destination) : 0;
            return new FlowDecision(true, ct, Verdict.Unrestricted, Verdict.Unrestricted, DropReason.None, src, hitDestination);
        }
        uint dst = snapshot.IpCache.Lookup(key.Destination);
        return Decide(snapshot, key, nowNs, checks, src, dst, ct, destinationService: destinationService);
    }

    /// <summary>
    /// Decides an ICMP error whose quoted packet has flow key <paramref name="quoted"/>: if that
    /// packet belongs to a tracked flow the error is related and skips policy; otherwise the
    /// error itself is judged like any packet.
    /// </summary>
    public FlowDecision ProcessIcmpError(in FlowKey key, in FlowKey quoted, long nowNs, PolicyChecks checks = PolicyChecks.Both, uint sourceIdentity = 0)
    {
        var snapshot = Current;
        uint src = sourceIdentity != 0 ? sourceIdentity : snapshot.IpCache.Lookup(key.Source);
        uint dst = snapshot.IpCache.Lookup(key.Destination);
        if (Conntrack.LookupRelated(quoted, nowNs) == CtResult.Related)
        {
            return new FlowDecision(true, CtResult.Related, Verdict.Unrestricted, Verdict.Unrestricted, DropReason.None, src, dst);
        }
        return Decide(snapshot, key, nowNs, checks, src, dst, CtResult.New, createEntry: false);
    }

    private FlowDecision Decide(PolicySnapshot snapshot, in FlowKey key, long nowNs, PolicyChecks checks, uint src, uint dst, CtResult ct, bool createEntry = true,
        string? destinationService = null)
    {
        ushort port = PolicySnapshot.PolicyPort(key);
        var egress = (checks & PolicyChecks.Egress) != 0
            ? snapshot.Lookup(src, Direction.Egress, dst, key.Protocol, port)
            : Verdict.Unrestricted;
        var ingress = (checks & PolicyChecks.Ingress) != 0 && egress.IsAllowed
            ? snapshot.Lookup(dst, Direction.Ingress, src, key.Protocol, port)
            : Verdict.Unrestricted;
        bool allowed = egress.IsAllowed && ingress.IsAllowed;
        var deciding = !egress.IsAllowed ? egress : ingress.Kind != VerdictKind.Unrestricted ? ingress : egress;
        var direction = !egress.IsAllowed || (checks & PolicyChecks.Ingress) == 0 ? Direction.Egress : Direction.Ingress;
        var reason = allowed ? DropReason.None : deciding.Kind == VerdictKind.Denied ? DropReason.PolicyDeny : DropReason.PolicyDenied;
        if (allowed && createEntry)
        {
            Conntrack.Create(key, nowNs);
        }
        var ev = new FlowEvent
        {
            TimeUnixNs = (_time.GetUtcNow().UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) * 100,
            Verdict = allowed ? FlowVerdict.Forwarded : FlowVerdict.Dropped,
            DropReason = reason,
            TrafficDirection = direction,
            Encrypted = EventsEncrypted,
            Key = key,
            SourceIdentity = src,
            DestinationIdentity = dst,
            RuleId = deciding.RuleId,
            PolicyVersion = snapshot.Version,
            DestinationService = destinationService,
        };
        Events.TryWrite(ev);
        return new FlowDecision(allowed, ct, egress, ingress, reason, src, dst);
    }
}
