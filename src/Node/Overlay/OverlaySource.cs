using Gateway.Node.Configuration;
using Gateway.Policy;

namespace Gateway.Node.Overlay;

/// <summary>
/// Where an overlay node's endpoints and policies come from: the files named in [Overlay]
/// (<see cref="FileOverlaySource"/>), or in cluster mode the node's own Endpoints file plus what
/// the other nodes published in etcd. <see cref="OverlayRuntime"/> loads through it at start,
/// on file changes, on SIGHUP and (cluster mode) on store changes.
/// </summary>
public interface IOverlaySource
{
    /// <summary>Reads the current endpoints and policies. Throws <see cref="PolicyLoadException"/>,
    /// <see cref="IOException"/> or <see cref="InvalidDataException"/> when they do not load; the
    /// caller then keeps the previous policy.</summary>
    (PolicySet Policies, EndpointTable Endpoints) Load(OverlaySection settings, IdentityAllocator identities);
}

/// <summary>The files of [Overlay]: Endpoints (every pod of the cluster) and Policy.</summary>
public sealed class FileOverlaySource : IOverlaySource
{
    public static readonly FileOverlaySource Instance = new();

    public (PolicySet Policies, EndpointTable Endpoints) Load(OverlaySection settings, IdentityAllocator identities)
    {
        var endpoints = EndpointFile.Load(settings.EndpointsPath!, identities);
        var policies = settings.PolicyPath is null ? PolicySet.Empty : PolicyLoader.Load(settings.PolicyPath);
        return (policies, endpoints);
    }
}
