using Gateway.Datapath;
using Gateway.Node.Bandwidth;

namespace Gateway.Node.Overlay;

public sealed partial class OverlayRuntime
{
    /// <summary>The bandwidth manager (pods' egress and ingress limits), once enabled.</summary>
    public BandwidthManager? Bandwidth { get; private set; }

    /// <summary>
    /// Turns the bandwidth manager on with <paramref name="clock"/> (a high-resolution clock: pacing
    /// needs microseconds) and applies the limits of the endpoints in force; every later policy load
    /// applies them again.
    /// </summary>
    public BandwidthManager EnableBandwidth(TimeProvider clock)
    {
        Bandwidth ??= new BandwidthManager(clock, Policy);
        ApplyBandwidth();
        return Bandwidth;
    }

    /// <summary>Applies the bandwidth annotations of the endpoints in force to the local pods and logs
    /// the annotations that were ignored.</summary>
    private void ApplyBandwidth()
    {
        var endpoints = Policy.Current.Endpoints;
        foreach (string warning in endpoints.Warnings)
        {
            _log.Warn(warning);
        }
        if (Bandwidth is not { } bandwidth)
        {
            return;
        }
        var pipeline = Pipeline;
        var local = new LpmTable<bool>();
        foreach (var prefix in pipeline.Options.PodCidrs)
        {
            local.Set(prefix, true);
        }
        bandwidth.Apply(endpoints.All, ip => local.TryLookup(ip, out _));
    }
}
