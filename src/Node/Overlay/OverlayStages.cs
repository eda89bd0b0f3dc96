using Gateway.Datapath;
using Gateway.Node.Daemon;
using Gateway.Tunnel;

namespace Gateway.Node.Overlay;

/// <summary>Overlay egress: workload packets pass egress policy and gain VXLAN before WireGuard
/// (<see cref="OverlayPipeline.BeginOutbound"/>); node traffic goes out as plain WireGuard.</summary>
public sealed class OverlayEgress(OverlayRuntime runtime) : IEgressStage
{
    private readonly OverlayPipeline _pipeline = runtime.Pipeline;

    public int Headroom => OverlayPipeline.Headroom;

    public StageResult Begin(Span<byte> slot, int length, out SealTicket ticket) =>
        ToStage(_pipeline.BeginOutbound(slot, OverlayPipeline.Headroom, length, out ticket));

    public StageResult Begin(Span<byte> slot, int length, long now, out SealTicket ticket) =>
        ToStage(_pipeline.BeginOutbound(slot, OverlayPipeline.Headroom, length, now, out ticket));

    public void EndBatch() => runtime.FlowLog?.Notify();

    internal static StageResult ToStage(in OverlayResult r) => r.Action switch
    {
        OverlayAction.Send => new(StageAction.Send, r.Offset, r.Length, r.Endpoint),
        OverlayAction.Deliver => new(StageAction.Deliver, r.Offset, r.Length, default),
        _ => default,
    };
}

/// <summary>Overlay ingress: after WireGuard opens a datagram, VXLAN is checked against the
/// sending peer, the VNI gives the source identity, and ingress policy decides.</summary>
public sealed class OverlayIngress(OverlayRuntime runtime) : IIngressStage
{
    private readonly OverlayPipeline _pipeline = runtime.Pipeline;

    public StageResult Begin(in IpEndpoint source, Span<byte> slot, int length, out OpenTicket ticket) =>
        OverlayEgress.ToStage(_pipeline.BeginInbound(source, slot, length, out ticket));

    public StageResult Begin(in IpEndpoint source, Span<byte> slot, int length, long now, out OpenTicket ticket) =>
        OverlayEgress.ToStage(_pipeline.BeginInbound(source, slot, length, now, out ticket));

    public StageResult Complete(in OpenTicket ticket, in IpEndpoint source, Span<byte> slot, int length) =>
        OverlayEgress.ToStage(_pipeline.CompleteInbound(ticket, source, slot, length));

    public void EndBatch() => runtime.FlowLog?.Notify();
}
