using Gateway.Datapath;
using Gateway.Tunnel;

namespace Gateway.Node.Daemon;

/// <summary>What the data path does with a packet after a stage has looked at it.</summary>
public enum StageAction : byte
{
    /// <summary>Nothing: dropped (and counted by the stage), or a handshake handled inside.</summary>
    None,
    /// <summary>Send bytes [Offset, Offset+Length) of the slot to <see cref="StageResult.Endpoint"/>.</summary>
    Send,
    /// <summary>Write bytes [Offset, Offset+Length) of the slot (an IP packet) to TUN.</summary>
    Deliver,
}

/// <summary>The mode-independent outcome of an egress or ingress stage, so the send and receive
/// paths never ask which mode the node runs in. No allocation.</summary>
public readonly record struct StageResult(StageAction Action, int Offset, int Length, IpEndpoint Endpoint)
{
    public static StageResult FromTunnel(in TunnelResult r) => r.Action switch
    {
        TunnelAction.SendToNetwork => new(StageAction.Send, r.Offset, r.Length, r.Endpoint),
        TunnelAction.DeliverToTun => new(StageAction.Deliver, r.Offset, r.Length, default),
        _ => default,
    };
}

/// <summary>
/// The per-packet work between the TUN read and the AEAD on the send path: plain WireGuard
/// routes by allowed IPs; the overlay adds policy and VXLAN first. Called in read order on the
/// reader thread; the seal itself (<see cref="WireGuardEngine.CompleteEncapsulate"/>) runs later
/// on any worker when the ticket is pending.
/// </summary>
public interface IEgressStage
{
    /// <summary>Bytes the stage needs in front of a packet read from TUN.</summary>
    int Headroom { get; }

    /// <summary>The packet is slot[<see cref="Headroom"/>, +<paramref name="length"/>), with 32 bytes
    /// free behind it. The result names the datagram to send (when <see cref="StageAction.Send"/>).</summary>
    StageResult Begin(Span<byte> slot, int length, out SealTicket ticket);

    /// <summary><see cref="Begin(Span{byte}, int, out SealTicket)"/> at the time <paramref name="now"/>:
    /// the engine's clock (<see cref="WireGuardEngine.ReadClock"/>), read once per batch by the send
    /// path. A stage without its own override reads the clock itself.</summary>
    StageResult Begin(Span<byte> slot, int length, long now, out SealTicket ticket) => Begin(slot, length, out ticket);

    /// <summary>A batch has left (flow events can be flushed now).</summary>
    void EndBatch();
}

/// <summary>
/// The per-packet work on the receive path around the AEAD: <see cref="Begin"/> (any thread,
/// in parallel) authenticates and decrypts or handles a handshake; <see cref="Complete"/> runs in
/// arrival order (replay window, timers, source and policy checks) when the ticket is pending.
/// </summary>
public interface IIngressStage
{
    /// <summary>The datagram is slot[0, <paramref name="length"/>); the slot has room behind it.</summary>
    StageResult Begin(in IpEndpoint source, Span<byte> slot, int length, out OpenTicket ticket);

    /// <summary><see cref="Begin(in IpEndpoint, Span{byte}, int, out OpenTicket)"/> at the time
    /// <paramref name="now"/> (the engine's clock, read once per batch by the receive path); the
    /// ticket carries it to <see cref="Complete"/>. A stage without its own override reads the clock itself.</summary>
    StageResult Begin(in IpEndpoint source, Span<byte> slot, int length, long now, out OpenTicket ticket) => Begin(source, slot, length, out ticket);

    StageResult Complete(in OpenTicket ticket, in IpEndpoint source, Span<byte> slot, int length);

    /// <summary>A batch has been delivered (flow events can be flushed now).</summary>
    void EndBatch();
}

/// <summary>Plain WireGuard egress: the engine routes the packet by its allowed IPs.</summary>
public sealed class PlainEgress(WireGuardEngine engine) : IEgressStage
{
    public int Headroom => Messages.TransportHeaderSize;

    public StageResult Begin(Span<byte> slot, int length, out SealTicket ticket) =>
        StageResult.FromTunnel(engine.BeginEncapsulateInPlace(slot, length, out ticket));

    public StageResult Begin(Span<byte> slot, int length, long now, out SealTicket ticket) =>
        StageResult.FromTunnel(engine.BeginEncapsulateInPlace(slot, length, now, out ticket));

    public void EndBatch()
    {
    }
}

/// <summary>Plain WireGuard ingress: what the engine opened goes to TUN as it is.</summary>
public sealed class PlainIngress(WireGuardEngine engine) : IIngressStage
{
    public StageResult Begin(in IpEndpoint source, Span<byte> slot, int length, out OpenTicket ticket) =>
        StageResult.FromTunnel(engine.BeginDecapsulate(source, slot[..length], out ticket));

    public StageResult Begin(in IpEndpoint source, Span<byte> slot, int length, long now, out OpenTicket ticket) =>
        StageResult.FromTunnel(engine.BeginDecapsulate(source, slot[..length], now, out ticket));

    public StageResult Complete(in OpenTicket ticket, in IpEndpoint source, Span<byte> slot, int length) =>
        StageResult.FromTunnel(engine.CompleteDecapsulate(ticket, source, slot[..length]));

    public void EndBatch()
    {
    }
}
