using Gateway.Cluster;
using Gateway.Node.Daemon;

namespace Gateway.Node.Cluster;

/// <summary>
/// Cluster mode's services: follows the Services stored in etcd (<see cref="ServiceStore"/>) and
/// hot-reloads the node's service table with them, compiled together with the Services file of
/// [Overlay] when there is one. A malformed stored object, or one that collides with another
/// service, is logged and leaves the table in force as it was.
/// </summary>
internal sealed class ClusterServices : IAsyncDisposable
{
    private readonly ServiceStore _store;

    private ClusterServices(ServiceStore store) => _store = store;

    /// <summary>Opens the store and starts watching it; changes reach <paramref name="node"/>'s overlay.</summary>
    public static ClusterServices Start(KvStoreOptions options, WireGuardNode node, NodeLog log)
    {
        var store = ServiceStore.Open(options, message => log.Warn(message));
        store.Changed += services =>
        {
            if (node.Overlay is not { } overlay)
            {
                return;
            }
            overlay.StoredServices = services;
            if (overlay.ReloadPolicy())
            {
                log.Info($"cluster: {services.Count} stored service(s) in force");
            }
        };
        store.StartWatching();
        return new ClusterServices(store);
    }

    /// <summary>Stored values refused by the last look at the store (a metric).</summary>
    public int Refused => _store.Refused;

    public ValueTask DisposeAsync() => _store.DisposeAsync();
}
