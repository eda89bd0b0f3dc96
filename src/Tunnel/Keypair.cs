using Gateway.Crypto;

namespace Gateway.Tunnel;

/// <summary>
/// One transport session (whitepaper 5.4.5/5.4.6): a sending and a receiving key, imported once,
/// the next sending counter, the replay window and the two session indices.
/// Owned by its peer; all access happens under the peer's lock.
/// </summary>
internal sealed class Keypair : IDisposable
{
    public Keypair(Peer peer, ReadOnlySpan<byte> sendKey, ReadOnlySpan<byte> receiveKey, bool isInitiator, long created, uint localIndex, uint remoteIndex)
    {
        Peer = peer;
        Send = new ChaCha20Poly1305Key(sendKey);
        Receive = new ChaCha20Poly1305Key(receiveKey);
        IsInitiator = isInitiator;
        Created = created;
        LocalIndex = localIndex;
        RemoteIndex = remoteIndex;
    }

    public Peer Peer { get; }
    public ChaCha20Poly1305Key Send { get; }
    public ChaCha20Poly1305Key Receive { get; }
    public bool IsInitiator { get; }
    public long Created { get; }
    public uint LocalIndex { get; }
    public uint RemoteIndex { get; }
    public readonly ReplayWindow Replay = new();
    /// <summary>Next counter to use for sending.</summary>
    public ulong SendCounter;
    public bool Disposed { get; private set; }

    /// <summary>Usable for sending: not past RejectAfterTime or RejectAfterMessages.</summary>
    public bool CanSend(long now) => !Disposed && SendCounter < WireGuardConstants.RejectAfterMessages && now - Created < WireGuardConstants.RejectAfterTime;

    public bool CanReceive(long now) => !Disposed && now - Created < WireGuardConstants.RejectAfterTime;

    public void Dispose()
    {
        if (Disposed) return;
        Disposed = true;
        Send.Dispose();
        Receive.Dispose();
    }
}
