using System.Buffers.Binary;
using System.Security.Cryptography;
using Gateway.Crypto;
using ChaCha20Poly1305 = Gateway.Crypto.ChaCha20Poly1305;

namespace Gateway.Tunnel.Noise;

internal enum HandshakeState : byte
{
    Zeroed,
    InitiationCreated,
    InitiationConsumed,
    ResponseCreated,
    ResponseConsumed,
}

/// <summary>
/// Per-peer Noise_IKpsk2 state (whitepaper 5.4.2 / 5.4.3). Every secret lives in arrays owned by
/// this object and is zeroed by <see cref="Clear"/>. The caller holds the peer's lock.
/// </summary>
internal sealed class Handshake
{
    /// <summary>Where ephemeral private keys come from: the engine's <see cref="IRandomSource"/>
    /// (the OS CSPRNG in the daemon), so a tool that owns the engine, such as the replay's key
    /// log for Wireshark, can record them.</summary>
    public IRandomSource Random = SystemRandomSource.Instance;

    private void NewEphemeral()
    {
        Random.Fill(EphemeralPrivate);
        // Clamp as RFC 7748 decodeScalar25519 (what X25519.GeneratePrivateKey does).
        EphemeralPrivate[0] &= 248;
        EphemeralPrivate[31] = (byte)((EphemeralPrivate[31] & 127) | 64);
    }

    public HandshakeState State;
    public readonly byte[] Hash = new byte[32];
    public readonly byte[] ChainKey = new byte[32];
    public readonly byte[] EphemeralPrivate = new byte[32];
    public readonly byte[] RemoteEphemeral = new byte[32];
    public readonly byte[] RemoteStatic = new byte[32];
    public readonly byte[] PresharedKey = new byte[32];
    /// <summary>DH(our static, their static): constant per key pair, computed on first use and
    /// cached (an X25519 agreement is far too slow to redo per handshake, and too slow to do
    /// eagerly for 10,000 peers at configuration time).</summary>
    public readonly byte[] StaticStatic = new byte[32];
    public bool StaticStaticValid;
    public bool StaticStaticComputed;
    /// <summary>Greatest TAI64N timestamp accepted from this peer (replay protection of initiations).</summary>
    public readonly byte[] LastTimestamp = new byte[Tai64N.Size];
    public long LastInitiationConsumed = long.MinValue / 2;
    public long LastSentHandshake = long.MinValue / 2;
    /// <summary>Index we told the peer for this handshake; 0 when the handshake owns no index.</summary>
    public uint LocalIndex;
    public uint RemoteIndex;

    public Handshake(ReadOnlySpan<byte> remoteStatic) => remoteStatic.CopyTo(RemoteStatic);

    public void Clear()
    {
        CryptographicOperations.ZeroMemory(Hash);
        CryptographicOperations.ZeroMemory(ChainKey);
        CryptographicOperations.ZeroMemory(EphemeralPrivate);
        CryptographicOperations.ZeroMemory(RemoteEphemeral);
        RemoteIndex = 0;
        State = HandshakeState.Zeroed;
    }

    public void ZeroAll()
    {
        Clear();
        CryptographicOperations.ZeroMemory(PresharedKey);
        CryptographicOperations.ZeroMemory(StaticStatic);
        StaticStaticValid = false;
        StaticStaticComputed = false;
    }

    /// <summary>Forgets the cached static-static secret (the private key changed).</summary>
    public void InvalidateStaticStatic()
    {
        CryptographicOperations.ZeroMemory(StaticStatic);
        StaticStaticValid = false;
        StaticStaticComputed = false;
    }

    /// <summary>Computes DH(our static, their static) once; false for a low-order peer key.</summary>
    public bool EnsureStaticStatic(ReadOnlySpan<byte> localPrivate)
    {
        if (!StaticStaticComputed)
        {
            StaticStaticValid = !localPrivate.IsEmpty && X25519.TryAgree(localPrivate, RemoteStatic, StaticStatic);
            if (!StaticStaticValid) CryptographicOperations.ZeroMemory(StaticStatic);
            StaticStaticComputed = true;
        }
        return StaticStaticValid;
    }

    /// <summary>
    /// Initiator, message 1 without macs. <paramref name="message"/> is 148 bytes; the caller has
    /// assigned <see cref="LocalIndex"/>. False when a DH result is all-zero (low-order key).
    /// </summary>
    public bool CreateInitiation(ReadOnlySpan<byte> localStaticPublic, ReadOnlySpan<byte> timestamp, Span<byte> message)
    {
        if (!StaticStaticValid) return false;
        message[..Messages.InitiationSize].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(message, (uint)MessageType.HandshakeInitiation);
        BinaryPrimitives.WriteUInt32LittleEndian(message[Messages.InitSender..], LocalIndex);

        NoiseConstants.InitialChainKey.CopyTo(ChainKey);
        NoiseConstants.InitialHash.CopyTo(Hash);
        NoiseConstants.MixHash(Hash, RemoteStatic);

        // e
        NewEphemeral();
        var ephemeral = message.Slice(Messages.InitEphemeral, 32);
        X25519.DerivePublicKey(EphemeralPrivate, ephemeral);
        WireGuardKdf.Kdf1(ChainKey, ephemeral, ChainKey);
        NoiseConstants.MixHash(Hash, ephemeral);

        Span<byte> shared = stackalloc byte[32];
        Span<byte> key = stackalloc byte[32];
        try
        {
            // es
            if (!X25519.TryAgree(EphemeralPrivate, RemoteStatic, shared)) return false;
            WireGuardKdf.Kdf2(ChainKey, shared, ChainKey, key);
            var encryptedStatic = message.Slice(Messages.InitStatic, 32 + 16);
            ChaCha20Poly1305.Seal(key, 0, localStaticPublic, Hash, encryptedStatic);
            NoiseConstants.MixHash(Hash, encryptedStatic);

            // ss
            WireGuardKdf.Kdf2(ChainKey, StaticStatic, ChainKey, key);
            var encryptedTimestamp = message.Slice(Messages.InitTimestamp, Tai64N.Size + 16);
            ChaCha20Poly1305.Seal(key, 0, timestamp, Hash, encryptedTimestamp);
            NoiseConstants.MixHash(Hash, encryptedTimestamp);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(shared);
            CryptographicOperations.ZeroMemory(key);
        }
        State = HandshakeState.InitiationCreated;
        return true;
    }

    /// <summary>Responder, message 2 without macs; the caller has assigned <see cref="LocalIndex"/>.</summary>
    public bool CreateResponse(Span<byte> message)
    {
        if (State != HandshakeState.InitiationConsumed) return false;
        message[..Messages.ResponseSize].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(message, (uint)MessageType.HandshakeResponse);
        BinaryPrimitives.WriteUInt32LittleEndian(message[Messages.RespSender..], LocalIndex);
        BinaryPrimitives.WriteUInt32LittleEndian(message[Messages.RespReceiver..], RemoteIndex);

        NewEphemeral();
        var ephemeral = message.Slice(Messages.RespEphemeral, 32);
        X25519.DerivePublicKey(EphemeralPrivate, ephemeral);
        WireGuardKdf.Kdf1(ChainKey, ephemeral, ChainKey);
        NoiseConstants.MixHash(Hash, ephemeral);

        Span<byte> shared = stackalloc byte[32];
        Span<byte> tau = stackalloc byte[32];
        Span<byte> key = stackalloc byte[32];
        try
        {
            // ee
            if (!X25519.TryAgree(EphemeralPrivate, RemoteEphemeral, shared)) return false;
            WireGuardKdf.Kdf1(ChainKey, shared, ChainKey);
            // se
            if (!X25519.TryAgree(EphemeralPrivate, RemoteStatic, shared)) return false;
            WireGuardKdf.Kdf1(ChainKey, shared, ChainKey);
            // psk
            WireGuardKdf.Kdf3(ChainKey, PresharedKey, ChainKey, tau, key);
            NoiseConstants.MixHash(Hash, tau);
            var empty = message.Slice(Messages.RespEmpty, 16);
            ChaCha20Poly1305.Seal(key, 0, ReadOnlySpan<byte>.Empty, Hash, empty);
            NoiseConstants.MixHash(Hash, empty);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(shared);
            CryptographicOperations.ZeroMemory(tau);
            CryptographicOperations.ZeroMemory(key);
        }
        State = HandshakeState.ResponseCreated;
        return true;
    }

    /// <summary>
    /// Initiator consumes message 2. State is only changed on success, so a forged response
    /// cannot disturb a handshake in flight.
    /// </summary>
    public bool ConsumeResponse(ReadOnlySpan<byte> message, ReadOnlySpan<byte> localStaticPrivate)
    {
        if (State != HandshakeState.InitiationCreated) return false;
        Span<byte> hash = stackalloc byte[32];
        Span<byte> chainKey = stackalloc byte[32];
        Span<byte> shared = stackalloc byte[32];
        Span<byte> tau = stackalloc byte[32];
        Span<byte> key = stackalloc byte[32];
        try
        {
            Hash.CopyTo(hash);
            ChainKey.CopyTo(chainKey);
            var ephemeral = message.Slice(Messages.RespEphemeral, 32);
            WireGuardKdf.Kdf1(chainKey, ephemeral, chainKey);
            NoiseConstants.MixHash(hash, ephemeral);
            if (!X25519.TryAgree(EphemeralPrivate, ephemeral, shared)) return false;
            WireGuardKdf.Kdf1(chainKey, shared, chainKey);
            if (!X25519.TryAgree(localStaticPrivate, ephemeral, shared)) return false;
            WireGuardKdf.Kdf1(chainKey, shared, chainKey);
            WireGuardKdf.Kdf3(chainKey, PresharedKey, chainKey, tau, key);
            NoiseConstants.MixHash(hash, tau);
            var empty = message.Slice(Messages.RespEmpty, 16);
            if (!ChaCha20Poly1305.Open(key, 0, empty, hash, Span<byte>.Empty)) return false;
            NoiseConstants.MixHash(hash, empty);

            hash.CopyTo(Hash);
            chainKey.CopyTo(ChainKey);
            RemoteIndex = BinaryPrimitives.ReadUInt32LittleEndian(message[Messages.RespSender..]);
            State = HandshakeState.ResponseConsumed;
            return true;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(hash);
            CryptographicOperations.ZeroMemory(chainKey);
            CryptographicOperations.ZeroMemory(shared);
            CryptographicOperations.ZeroMemory(tau);
            CryptographicOperations.ZeroMemory(key);
        }
    }

    /// <summary>
    /// Derives the transport keys (whitepaper 5.4.5) and zeroes the handshake. Initiator:
    /// (send, receive) = KDF2(C, ε); responder the other way round.
    /// </summary>
    public bool DeriveTransportKeys(Span<byte> sendKey, Span<byte> receiveKey, out bool isInitiator)
    {
        isInitiator = State == HandshakeState.ResponseConsumed;
        if (State is not (HandshakeState.ResponseConsumed or HandshakeState.ResponseCreated)) return false;
        if (isInitiator) WireGuardKdf.Kdf2(ChainKey, ReadOnlySpan<byte>.Empty, sendKey, receiveKey);
        else WireGuardKdf.Kdf2(ChainKey, ReadOnlySpan<byte>.Empty, receiveKey, sendKey);
        Clear();
        return true;
    }
}

/// <summary>
/// The responder's first half of message 1, before the peer is known: everything up to and
/// including the decryption of the initiator's static key and timestamp.
/// </summary>
internal static class InitiationReader
{
    /// <summary>
    /// Decrypts the static key of an initiation. <paramref name="hash"/>/<paramref name="chainKey"/>
    /// receive the state after mixing the encrypted static; <paramref name="initialHash"/> is
    /// HASH(HASH(Ci||IDENTIFIER) || our public key), precomputed per engine.
    /// </summary>
    public static bool TryDecryptStatic(ReadOnlySpan<byte> message, ReadOnlySpan<byte> localPrivate, ReadOnlySpan<byte> initialHash,
        Span<byte> hash, Span<byte> chainKey, Span<byte> remoteStatic)
    {
        Span<byte> shared = stackalloc byte[32];
        Span<byte> key = stackalloc byte[32];
        try
        {
            NoiseConstants.InitialChainKey.CopyTo(chainKey);
            initialHash.CopyTo(hash);
            var ephemeral = message.Slice(Messages.InitEphemeral, 32);
            WireGuardKdf.Kdf1(chainKey, ephemeral, chainKey);
            NoiseConstants.MixHash(hash, ephemeral);
            if (!X25519.TryAgree(localPrivate, ephemeral, shared)) return false;
            WireGuardKdf.Kdf2(chainKey, shared, chainKey, key);
            var encryptedStatic = message.Slice(Messages.InitStatic, 48);
            if (!ChaCha20Poly1305.Open(key, 0, encryptedStatic, hash, remoteStatic)) return false;
            NoiseConstants.MixHash(hash, encryptedStatic);
            return true;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(shared);
            CryptographicOperations.ZeroMemory(key);
        }
    }

    /// <summary>Second half: the ss step with the peer's precomputed static-static secret.</summary>
    public static bool TryDecryptTimestamp(ReadOnlySpan<byte> message, ReadOnlySpan<byte> staticStatic,
        Span<byte> hash, Span<byte> chainKey, Span<byte> timestamp)
    {
        Span<byte> key = stackalloc byte[32];
        try
        {
            WireGuardKdf.Kdf2(chainKey, staticStatic, chainKey, key);
            var encryptedTimestamp = message.Slice(Messages.InitTimestamp, Tai64N.Size + 16);
            if (!ChaCha20Poly1305.Open(key, 0, encryptedTimestamp, hash, timestamp)) return false;
            NoiseConstants.MixHash(hash, encryptedTimestamp);
            return true;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(key);
        }
    }
}
