using Gateway.Datapath;
using Gateway.Node.Bandwidth;
using Gateway.Policy;

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
        lock (_reloadLock)
        {
            // Under the reload lock: stored limits (cluster mode) may arrive at the same moment.
            Bandwidth ??= new BandwidthManager(clock, Policy);
            ApplyBandwidth();
            return Bandwidth;
        }
    }

    /// <summary>
    /// Pods' limits stored in etcd (cluster mode, by <c>namespace/name</c>), set by the cluster agent
    /// when its bandwidth store changes: on every apply a stored limit overrides the endpoints file's
    /// annotation of the same direction. Null: none.
    /// </summary>
    public IReadOnlyDictionary<string, BandwidthLimits>? StoredBandwidth { get; private set; }

    /// <summary>Takes the stored limits and applies them with the endpoints in force, at once.</summary>
    public void ApplyStoredBandwidth(IReadOnlyDictionary<string, BandwidthLimits> stored)
    {
        ArgumentNullException.ThrowIfNull(stored);
        lock (_reloadLock)
        {
            StoredBandwidth = stored;
            ApplyBandwidth(logWarnings: false);
        }
    }

    /// <summary>Applies the bandwidth annotations of the endpoints in force to the local pods and logs
    /// the annotations that were ignored.</summary>
    private void ApplyBandwidth(bool logWarnings = true)
    {
        var endpoints = Policy.Current.Endpoints;
        if (logWarnings)
        {
            foreach (string warning in endpoints.Warnings)
            {
                _log.Warn(warning);
            }
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
        bandwidth.Apply(endpoints.All, ip => local.TryLookup(ip, out _), StoredBandwidth);
    }
}
