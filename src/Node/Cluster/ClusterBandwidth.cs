using Gateway.Cluster;
using Gateway.Node.Daemon;

namespace Gateway.Node.Cluster;

/// <summary>
/// Cluster mode's bandwidth annotations: follows the pods' limits stored in etcd
/// (<see cref="BandwidthStore"/>, `gateway bandwidth apply --kvstore`) and applies them, merged
/// with the annotations of the node's Endpoints file, to the pods in its PodCIDR. A stored value
/// overrides the file's value of the same annotation; running flows keep their schedules.
/// </summary>
internal sealed class ClusterBandwidth : IAsyncDisposable
{
    private readonly BandwidthStore _store;

    private ClusterBandwidth(BandwidthStore store) => _store = store;

    /// <summary>Opens the store and starts watching it; changes reach <paramref name="node"/>'s overlay.</summary>
    public static ClusterBandwidth Start(KvStoreOptions options, WireGuardNode node, NodeLog log)
    {
        var store = BandwidthStore.Open(options, message => log.Warn(message));
        int said = 0; // an empty store at start is not worth a line
        store.Changed += limits =>
        {
            if (node.Overlay is not { } overlay)
            {
                return;
            }
            overlay.ApplyStoredBandwidth(limits);
            if (said != limits.Count)
            {
                said = limits.Count;
                log.Info($"cluster: bandwidth limits stored for {limits.Count} pod(s)");
            }
        };
        store.StartWatching();
        return new ClusterBandwidth(store);
    }

    /// <summary>Stored records or values ignored by the last look at the store (a metric).</summary>
    public int Refused => _store.Refused;

    public ValueTask DisposeAsync() => _store.DisposeAsync();
}
