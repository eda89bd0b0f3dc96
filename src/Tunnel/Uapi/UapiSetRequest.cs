using System.Security.Cryptography;
using Gateway.Datapath;

namespace Gateway.Tunnel.Uapi;

/// <summary>The changes of one peer section of a UAPI `set=1` request, in the order wireguard-go applies them.</summary>
public sealed class UapiPeerChange
{
    public UapiPeerChange(PublicKey publicKey) => PublicKey = publicKey;

    public PublicKey PublicKey { get; }
    public bool Remove { get; set; }
    public bool UpdateOnly { get; set; }
    /// <summary>32 bytes; all-zero removes the preshared key. Zeroed by <see cref="UapiSetRequest.Dispose"/>.</summary>
    public byte[]? PresharedKey { get; set; }
    public IpEndpoint? Endpoint { get; set; }
    public ushort? PersistentKeepaliveInterval { get; set; }
    /// <summary>Remove the peer's allowed IPs before adding <see cref="AllowedIps"/>.</summary>
    public bool ReplaceAllowedIps { get; set; }
    public List<IpPrefix> AllowedIps { get; } = new();
}

/// <summary>A parsed UAPI `set=1` request: device lines, then peer sections.</summary>
public sealed class UapiSetRequest : IDisposable
{
    /// <summary>32 bytes; all-zero removes the private key. Zeroed by <see cref="Dispose"/>.</summary>
    public byte[]? PrivateKey { get; set; }
    public ushort? ListenPort { get; set; }
    public uint? FwMark { get; set; }
    public bool ReplacePeers { get; set; }
    public List<UapiPeerChange> Peers { get; } = new();

    public void Dispose()
    {
        if (PrivateKey is not null) CryptographicOperations.ZeroMemory(PrivateKey);
        foreach (var peer in Peers)
            if (peer.PresharedKey is not null) CryptographicOperations.ZeroMemory(peer.PresharedKey);
    }
}

/// <summary>One peer as `get=1` reports it.</summary>
public sealed record UapiPeerState(
    PublicKey PublicKey,
    byte[] PresharedKey,
    IpEndpoint? Endpoint,
    long LastHandshakeTimeSec,
    long LastHandshakeTimeNsec,
    long TxBytes,
    long RxBytes,
    ushort PersistentKeepaliveInterval,
    IReadOnlyList<IpPrefix> AllowedIps);

/// <summary>The device as `get=1` reports it. Holds secrets: <see cref="Dispose"/> zeroes them.</summary>
public sealed record UapiDeviceState(byte[]? PrivateKey, ushort ListenPort, uint FwMark, IReadOnlyList<UapiPeerState> Peers) : IDisposable
{
    public void Dispose()
    {
        if (PrivateKey is not null) CryptographicOperations.ZeroMemory(PrivateKey);
        foreach (var p in Peers) CryptographicOperations.ZeroMemory(p.PresharedKey);
    }
}
