using Gateway.Crypto;

namespace Gateway.Tunnel;

/// <summary>
/// One transport session (whitepaper 5.4.5/5.4.6): a sending and a receiving key, imported once,
/// the next sending counter, the replay window and the two session indices.
/// Owned by its peer; state changes happen under the peer's lock. The AEAD itself runs outside
/// that lock (so sealing and opening for one peer proceed in parallel), holding a reference:
/// retiring the keypair destroys the keys only when the last in-flight user releases it.
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
    // Twice the number of references (the owner's and one per AEAD call in flight), plus 1 once
    // the keys are destroyed: taking a reference is then one atomic add, and an odd value after
    // it means the keys are gone (that state is final, so nothing needs undoing).
    private int _references = 2;
    private volatile bool _retired;

    /// <summary>Removed from its peer; no new use may start.</summary>
    public bool Retired => _retired;

    /// <summary>The keys are destroyed (retired and no use in flight).</summary>
    public bool Disposed => (Volatile.Read(ref _references) & 1) != 0;

    /// <summary>Usable for sending: not past RejectAfterTime or RejectAfterMessages.</summary>
    public bool CanSend(long now) => !_retired && SendCounter < WireGuardConstants.RejectAfterMessages && now - Created < WireGuardConstants.RejectAfterTime;

    public bool CanReceive(long now) => !_retired && now - Created < WireGuardConstants.RejectAfterTime;

    /// <summary>Takes a reference for one AEAD call; false once the keys are gone.</summary>
    public bool TryAcquire() => (Interlocked.Add(ref _references, 2) & 1) == 0;

    public void Release()
    {
        // The last reference out destroys the keys, unless a new user slipped in between the
        // decrement and the mark (then that user destroys them when it releases).
        if (Interlocked.Add(ref _references, -2) == 0 && Interlocked.CompareExchange(ref _references, 1, 0) == 0)
        {
            Send.Dispose();
            Receive.Dispose();
        }
    }

    /// <summary>Retires the keypair (owner side); keys are zeroed when the last user releases.</summary>
    public void Dispose()
    {
        if (_retired) return;
        _retired = true;
        Release();
    }
}
