using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using Gateway.Crypto;
using Gateway.Datapath;
using Gateway.Tunnel.Noise;

namespace Gateway.Tunnel;

/// <summary>Construction options of a <see cref="WireGuardEngine"/>.</summary>
public sealed class WireGuardEngineOptions
{
    /// <summary>Monotonic time (GetTimestamp) for timers and wall time (GetUtcNow) for TAI64N and last-handshake.</summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;
    /// <summary>Session indices, timer jitter, cookie secrets and nonces.</summary>
    public IRandomSource Random { get; init; } = SystemRandomSource.Instance;
    /// <summary>Padding never grows a packet beyond this (the TUN MTU); 0 = no cap.</summary>
    public int Mtu { get; init; } = 1420;
    /// <summary>Handshake messages per second above which the engine is "under load" and demands cookies.</summary>
    public int UnderLoadHandshakesPerSecond { get; init; } = 1024;
}

/// <summary>
/// The WireGuard protocol core (in the spirit of boringtun's Tunn, structured like wireguard-go's
/// device): no I/O, time from an injected clock. The daemon hands it outgoing IP packets
/// (<see cref="Encapsulate"/>/<see cref="EncapsulateInPlace"/>) and incoming datagrams
/// (<see cref="Decapsulate"/>), calls <see cref="Tick"/> periodically (every 100-250 ms), and sends
/// whatever the engine emits through <see cref="ITunnelOutput"/>.
/// <para>Threading: data-path calls for different peers may run in parallel (each takes only its
/// peer's lock); handshake processing, configuration and Tick serialize on one control lock,
/// always taken before a peer lock.</para>
/// </summary>
public sealed class WireGuardEngine : IDisposable
{
    private sealed class IndexEntry(Peer peer, Keypair? keypair)
    {
        public readonly Peer Peer = peer;
        public readonly Keypair? Keypair = keypair;
    }

    /// <summary>Our static identity; replaced as a whole when the private key changes.</summary>
    private sealed class LocalIdentity : IDisposable
    {
        public readonly byte[] Private = GC.AllocateArray<byte>(32, pinned: true);
        public readonly byte[] Public = new byte[32];
        /// <summary>HASH(HASH(Ci || IDENTIFIER) || our public key): the responder's starting hash.</summary>
        public readonly byte[] InitialHash = new byte[32];
        public void Dispose() => CryptographicOperations.ZeroMemory(Private);
    }

    /// <summary>A reported backlog of this many handshake messages puts the engine under load
    /// (wireguard-go: QueueHandshakeSize / 8).</summary>
    public const int HandshakeBacklogUnderLoad = 128;

    private readonly Lock _control = new();
    private readonly TimeProvider _clock;
    private readonly IRandomSource _random;
    private readonly ITunnelOutput _output;
    private readonly Tai64NGenerator _tai;
    private readonly InitiationTimestamps _removedTimestamps = new();
    private readonly int _mtu;
    private readonly int _underLoadThreshold;
    private readonly long _nanosPerTick; // 0: convert through ClockExtensions.NowNanoseconds
    private volatile LocalIdentity? _identity;
    private readonly ConcurrentDictionary<PublicKey, Peer> _peers = new();
    private readonly ConcurrentDictionary<uint, IndexEntry> _index = new();
    private readonly LpmTable<Peer> _allowedIps = new();
    private readonly CookieChecker _cookieChecker = new();
    private readonly InitiationRateLimiter _rateLimiter = new();
    private readonly InitiationRateLimiter _cookieReplyLimiter = new();
    // One 64-byte line per counter: the send and receive threads bump different counters and
    // must not false-share a cache line.
    private const int CounterStride = 8;
    private readonly long[] _counters = new long[(int)TunnelEvent.Count * CounterStride];
    private long _loadWindowStart = long.MinValue / 2;
    private int _loadWindowCount;
    private long _underLoadUntil = long.MinValue / 2;
    private volatile int _reportedBacklog;
    private bool _disposed;
    private long _peerSequence;

    [ThreadStatic] private static byte[]? t_scratch;

    public WireGuardEngine(ITunnelOutput output, WireGuardEngineOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(output);
        options ??= new WireGuardEngineOptions();
        ArgumentNullException.ThrowIfNull(options.Clock);
        ArgumentNullException.ThrowIfNull(options.Random);
        ArgumentOutOfRangeException.ThrowIfNegative(options.Mtu);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.UnderLoadHandshakesPerSecond);
        _output = output;
        _clock = options.Clock;
        _random = options.Random;
        _mtu = options.Mtu;
        _underLoadThreshold = options.UnderLoadHandshakesPerSecond;
        _tai = new Tai64NGenerator(_clock);
        // Clocks that tick in whole nanoseconds (Stopwatch: 1 ns; the coarse clock: 1 ms) convert
        // with one multiplication instead of the general path's divisions.
        long frequency = _clock.TimestampFrequency;
        _nanosPerTick = frequency is > 0 and <= 1_000_000_000L && 1_000_000_000L % frequency == 0 ? 1_000_000_000L / frequency : 0;
    }

    internal long Now => _nanosPerTick != 0 ? _clock.GetTimestamp() * _nanosPerTick : _clock.NowNanoseconds();

    /// <summary>
    /// The engine's clock in monotonic nanoseconds. A data path that handles packets in batches
    /// reads it once per batch and hands the reading to the batch's calls (the overloads with a
    /// <c>now</c> parameter), instead of each call reading the clock again.
    /// </summary>
    public long ReadClock() => Now;

    /// <summary>How many plaintext bytes this engine seals for an IP packet of <paramref name="packetLength"/>
    /// bytes: padded to a multiple of 16, but never beyond the MTU (a packet already larger than
    /// the MTU is not padded).</summary>
    public int PaddedLength(int packetLength) => Messages.PaddedLength(packetLength, _mtu == 0 ? int.MaxValue : _mtu);

    /// <summary>The random source handshakes draw their ephemeral keys from.</summary>
    internal IRandomSource RandomSource => _random;

    // ------------------------------------------------------------------ configuration

    /// <summary>Our public key, or null while no private key is set.</summary>
    public PublicKey? LocalPublicKey => _identity is { } id ? new PublicKey(id.Public) : null;

    /// <summary>The UDP port the daemon should listen on (UAPI listen_port); the engine only stores it.</summary>
    public ushort ListenPort { get; set; }

    /// <summary>The socket mark the daemon should set (UAPI fwmark); the engine only stores it.</summary>
    public uint FwMark { get; set; }

    public int PeerCount => _peers.Count;

    /// <summary>All peers in creation order.</summary>
    public IReadOnlyList<Peer> Peers => _peers.Values.OrderBy(p => p.Sequence).ToArray();

    /// <summary>Copies the private key into <paramref name="destination"/> (32 bytes); false when none is set.</summary>
    public bool TryCopyPrivateKey(Span<byte> destination)
    {
        var id = _identity;
        if (id is null) return false;
        id.Private.CopyTo(destination);
        return true;
    }

    /// <summary>
    /// Sets (or with an empty/all-zero key, clears) the static private key. As in wireguard-go, a
    /// peer whose public key equals our new public key is removed, and every other peer's sessions
    /// are expired so that the next packet triggers a fresh handshake.
    /// </summary>
    public void SetPrivateKey(ReadOnlySpan<byte> privateKey)
    {
        if (!privateKey.IsEmpty && privateKey.Length != 32) throw new ArgumentException("A private key is 32 bytes.", nameof(privateKey));
        bool clear = privateKey.IsEmpty || privateKey.IndexOfAnyExcept((byte)0) < 0;
        lock (_control)
        {
            var old = _identity;
            if (old is null && clear) return;
            if (old is not null && !clear && CryptographicOperations.FixedTimeEquals(old.Private, privateKey)) return;
            LocalIdentity? identity = null;
            if (!clear)
            {
                identity = new LocalIdentity();
                privateKey.CopyTo(identity.Private);
                X25519.DerivePublicKey(identity.Private, identity.Public);
                NoiseConstants.InitialHash.CopyTo(identity.InitialHash);
                NoiseConstants.MixHash(identity.InitialHash, identity.Public);
                if (_peers.ContainsKey(new PublicKey(identity.Public))) RemovePeerCore(new PublicKey(identity.Public));
            }
            _identity = identity;
            _cookieChecker.SetLocalPublicKey(identity is null ? ReadOnlySpan<byte>.Empty : identity.Public);
            long now = Now;
            foreach (var peer in _peers.Values)
            {
                lock (peer.Sync)
                {
                    peer.Handshake.InvalidateStaticStatic();
                    ExpireCurrentKeypairsLocked(peer, now);
                }
            }
            old?.Dispose();
        }
    }

    public bool TryGetPeer(PublicKey publicKey, out Peer peer) => _peers.TryGetValue(publicKey, out peer!);

    /// <summary>Returns the peer with this key, creating it when absent. Our own public key is refused.</summary>
    public Peer GetOrAddPeer(PublicKey publicKey)
    {
        lock (_control)
        {
            ThrowIfDisposed();
            if (_peers.TryGetValue(publicKey, out var existing)) return existing;
            if (_identity is { } id && new PublicKey(id.Public) == publicKey)
                throw new ArgumentException("A peer cannot have the interface's own public key.", nameof(publicKey));
            var peer = new Peer(this, publicKey) { Sequence = ++_peerSequence };
            _removedTimestamps.Restore(publicKey, peer.Handshake.LastTimestamp);
            _peers[publicKey] = peer;
            return peer;
        }
    }

    public bool RemovePeer(PublicKey publicKey)
    {
        lock (_control) return RemovePeerCore(publicKey);
    }

    public void RemoveAllPeers()
    {
        lock (_control)
            foreach (var key in _peers.Keys.ToArray()) RemovePeerCore(key);
    }

    private bool RemovePeerCore(PublicKey publicKey)
    {
        if (!_peers.TryRemove(publicKey, out var peer)) return false;
        lock (peer.Sync)
        {
            peer.Removed = true;
            foreach (var prefix in peer.AllowedIpList)
                if (_allowedIps.TryGetExact(prefix, out var owner) && owner == peer) _allowedIps.Remove(prefix);
            peer.AllowedIpList.Clear();
            ZeroAndFlushAllLocked(peer);
            _removedTimestamps.Remember(publicKey, peer.Handshake.LastTimestamp);
            peer.Handshake.ZeroAll();
            peer.Cookies.Clear();
        }
        return true;
    }

    /// <summary>Sets the preshared key; empty or all-zero means none.</summary>
    public void SetPresharedKey(Peer peer, ReadOnlySpan<byte> presharedKey)
    {
        ArgumentNullException.ThrowIfNull(peer);
        if (!presharedKey.IsEmpty && presharedKey.Length != 32) throw new ArgumentException("A preshared key is 32 bytes.", nameof(presharedKey));
        lock (peer.Sync)
        {
            if (presharedKey.IsEmpty) CryptographicOperations.ZeroMemory(peer.Handshake.PresharedKey);
            else presharedKey.CopyTo(peer.Handshake.PresharedKey);
            peer.HasPresharedKey = peer.Handshake.PresharedKey.AsSpan().IndexOfAnyExcept((byte)0) >= 0;
        }
    }

    internal void CopyPresharedKey(Peer peer, Span<byte> destination)
    {
        lock (peer.Sync) peer.Handshake.PresharedKey.CopyTo(destination);
    }

    public void SetEndpoint(Peer peer, IpEndpoint endpoint)
    {
        ArgumentNullException.ThrowIfNull(peer);
        lock (peer.Sync) peer.EndpointValue = endpoint;
    }

    /// <summary>Sets the persistent keepalive interval (seconds, 0 = off). Turning it on sends a keepalive at once (wireguard-go).</summary>
    public void SetPersistentKeepalive(Peer peer, ushort seconds)
    {
        ArgumentNullException.ThrowIfNull(peer);
        lock (peer.Sync)
        {
            ushort old = peer.PersistentKeepaliveValue;
            peer.PersistentKeepaliveValue = seconds;
            if (seconds == 0) peer.PersistentKeepaliveAt = Peer.Disarmed;
            if (old == 0 && seconds != 0 && !peer.Removed) SendKeepaliveLocked(peer, Now);
        }
    }

    /// <summary>Routes <paramref name="prefix"/> to <paramref name="peer"/> (taking it from any other peer).</summary>
    public void AddAllowedIp(Peer peer, IpPrefix prefix)
    {
        ArgumentNullException.ThrowIfNull(peer);
        lock (_control)
        {
            if (peer.Removed) throw new InvalidOperationException("The peer was removed.");
            if (_allowedIps.TryGetExact(prefix, out var old) && old != peer)
                lock (old.Sync) old.AllowedIpList.Remove(prefix);
            _allowedIps.Set(prefix, peer);
            lock (peer.Sync)
                if (!peer.AllowedIpList.Contains(prefix)) peer.AllowedIpList.Add(prefix);
        }
    }

    public void ClearAllowedIps(Peer peer)
    {
        ArgumentNullException.ThrowIfNull(peer);
        lock (_control)
        lock (peer.Sync)
        {
            foreach (var prefix in peer.AllowedIpList)
                if (_allowedIps.TryGetExact(prefix, out var owner) && owner == peer) _allowedIps.Remove(prefix);
            peer.AllowedIpList.Clear();
        }
    }

    /// <summary>The peer whose allowed IPs contain <paramref name="address"/> (longest match).</summary>
    public bool TryRoute(IpAddress address, out Peer peer) => _allowedIps.TryLookup(address, out peer!);

    /// <summary>Starts a handshake now (subject to the one-per-RekeyTimeout limit).</summary>
    public void InitiateHandshake(Peer peer)
    {
        ArgumentNullException.ThrowIfNull(peer);
        lock (peer.Sync)
            if (!peer.Removed) SendHandshakeInitiationLocked(peer, Now, isRetry: false);
    }

    /// <summary>The daemon reports how many handshake datagrams wait in its queue; 128 or more
    /// means "under load" (wireguard-go's threshold), as does a high handshake rate.</summary>
    public void ReportHandshakeBacklog(int pending) => _reportedBacklog = Math.Max(0, pending);

    /// <summary>How often <paramref name="kind"/> happened since the engine was created.</summary>
    public long GetCount(TunnelEvent kind) => Interlocked.Read(ref _counters[(int)kind * CounterStride]);

    // ------------------------------------------------------------------ data path: outward

    /// <summary>
    /// Encrypts one IP packet from the TUN device into <paramref name="destination"/> (which needs
    /// <see cref="Messages.TransportSize"/> bytes). Result: SendToNetwork with the datagram at
    /// [0, Length) and the peer's endpoint; None when the packet was staged awaiting a handshake
    /// (the initiation went out through <see cref="ITunnelOutput"/>); Drop with a reason otherwise.
    /// </summary>
    public TunnelResult Encapsulate(ReadOnlySpan<byte> ipPacket, Span<byte> destination)
    {
        if (destination.Length < Messages.TransportHeaderSize + ipPacket.Length)
            return Drop(TunnelEvent.BufferTooSmall);
        ipPacket.CopyTo(destination[Messages.TransportHeaderSize..]);
        return EncapsulateCore(destination, ipPacket.Length);
    }

    /// <summary>
    /// Zero-copy variant: the IP packet is already at buffer[16 .. 16+packetLength) (headroom for
    /// the transport header) and is sealed in place; the buffer needs room for padding and tag.
    /// </summary>
    public TunnelResult EncapsulateInPlace(Span<byte> buffer, int packetLength) => EncapsulateInPlace(buffer, packetLength, Now);

    /// <summary><see cref="EncapsulateInPlace(Span{byte}, int)"/> at the time <paramref name="now"/>
    /// (<see cref="ReadClock"/>, read once for a batch).</summary>
    public TunnelResult EncapsulateInPlace(Span<byte> buffer, int packetLength, long now)
    {
        if (packetLength < 0 || Messages.TransportHeaderSize + packetLength > buffer.Length)
            return Drop(TunnelEvent.BufferTooSmall);
        return EncapsulateCore(buffer, packetLength, now);
    }

    private TunnelResult EncapsulateCore(Span<byte> buffer, int packetLength) => EncapsulateCore(buffer, packetLength, Now);

    private TunnelResult EncapsulateCore(Span<byte> buffer, int packetLength, long now)
    {
        var result = PrepareSeal(buffer, packetLength, now, out var ticket);
        if (!ticket.IsPending) return result;
        // The AEAD runs outside the peer lock: the receive path for this peer is not held up.
        return CompleteSeal(ticket, buffer) ? result : Drop(TunnelEvent.KeypairExpired, result.Peer);
    }

    /// <summary>
    /// First half of a split seal, for pipelines that encrypt on worker threads: routes the packet
    /// at buffer[16 .. 16+packetLength), picks the session and assigns the next counter, all
    /// under the peer's lock, so that calling this in order gives each peer's packets rising
    /// counters. When <paramref name="ticket"/> is pending the result is SendToNetwork and the
    /// caller must run <see cref="CompleteEncapsulate"/> on the same buffer (any thread) before
    /// sending; otherwise the result is final (dropped, or staged awaiting a handshake).
    /// </summary>
    public TunnelResult BeginEncapsulateInPlace(Span<byte> buffer, int packetLength, out SealTicket ticket) =>
        BeginEncapsulateInPlace(buffer, packetLength, Now, out ticket);

    /// <summary><see cref="BeginEncapsulateInPlace(Span{byte}, int, out SealTicket)"/> at the time
    /// <paramref name="now"/> (<see cref="ReadClock"/>, read once for the batch).</summary>
    public TunnelResult BeginEncapsulateInPlace(Span<byte> buffer, int packetLength, long now, out SealTicket ticket)
    {
        if (packetLength < 0 || Messages.TransportHeaderSize + packetLength > buffer.Length)
        {
            ticket = default;
            return Drop(TunnelEvent.BufferTooSmall);
        }
        return PrepareSeal(buffer, packetLength, now, out ticket);
    }

    /// <summary>
    /// <see cref="BeginEncapsulateInPlace(Span{byte}, int, out SealTicket)"/> for a caller that has
    /// already routed the packet (the overlay picks the node by its pod CIDRs): the allowed-IPs
    /// lookup is skipped, so each packet is routed once. A peer removed meanwhile drops it (NoRoute).
    /// </summary>
    public TunnelResult BeginEncapsulateInPlace(Peer peer, Span<byte> buffer, int packetLength, out SealTicket ticket) =>
        BeginEncapsulateInPlace(peer, buffer, packetLength, Now, out ticket);

    /// <summary><see cref="BeginEncapsulateInPlace(Peer, Span{byte}, int, out SealTicket)"/> at the
    /// time <paramref name="now"/> (<see cref="ReadClock"/>, read once for the batch).</summary>
    public TunnelResult BeginEncapsulateInPlace(Peer peer, Span<byte> buffer, int packetLength, long now, out SealTicket ticket)
    {
        ArgumentNullException.ThrowIfNull(peer);
        if (packetLength < 0 || Messages.TransportHeaderSize + packetLength > buffer.Length)
        {
            ticket = default;
            return Drop(TunnelEvent.BufferTooSmall);
        }
        if (!ReferenceEquals(peer.Engine, this))
        {
            throw new ArgumentException("The peer belongs to another engine.", nameof(peer));
        }
        return PrepareSeal(peer, buffer, packetLength, now, out ticket);
    }

    /// <summary>True when <paramref name="peer"/> is still one of this engine's peers.</summary>
    public static bool IsLive(Peer peer) => !Volatile.Read(ref peer.Removed);

    /// <summary>Second half of a split seal: the AEAD in place. False (counted as KeypairExpired)
    /// when the session's keys were destroyed in between; the packet must then not be sent.</summary>
    public bool CompleteEncapsulate(in SealTicket ticket, Span<byte> buffer)
    {
        if (!ticket.IsPending) throw new ArgumentException("The ticket has no seal pending.", nameof(ticket));
        if (CompleteSeal(ticket, buffer)) return true;
        Drop(TunnelEvent.KeypairExpired, ticket.Keypair!.Peer);
        return false;
    }

    private static bool CompleteSeal(in SealTicket ticket, Span<byte> buffer)
    {
        var keypair = ticket.Keypair!;
        // A reference for the AEAD call: retiring the keypair meanwhile cannot zero the keys
        // under us. Failing means the keys are already gone.
        if (!keypair.TryAcquire()) return false;
        try
        {
            Seal(keypair, ticket.Counter, buffer, ticket.PacketLength, ticket.Padded);
        }
        finally
        {
            keypair.Release();
        }
        return true;
    }

    private TunnelResult PrepareSeal(Span<byte> buffer, int packetLength, long now, out SealTicket ticket)
    {
        ticket = default;
        var packet = buffer.Slice(Messages.TransportHeaderSize, packetLength);
        if (!InnerPacket.TryGetDestination(packet, out var destinationAddress))
            return Drop(TunnelEvent.NotIpPacket);
        if (!_allowedIps.TryLookup(destinationAddress, out var peer))
            return Drop(TunnelEvent.NoRoute);
        return PrepareSeal(peer, buffer, packetLength, now, out ticket);
    }

    private TunnelResult PrepareSeal(Peer peer, Span<byte> buffer, int packetLength, long now, out SealTicket ticket)
    {
        ticket = default;
        var packet = buffer.Slice(Messages.TransportHeaderSize, packetLength);
        int padded = PaddedLength(packetLength);
        int total = Messages.TransportHeaderSize + padded + Messages.TagSize;
        IpEndpoint endpoint;
        lock (peer.Sync)
        {
            if (peer.Removed) return Drop(TunnelEvent.NoRoute);
            // Our own datagram routed back into the tunnel: sealing it again would loop.
            if (InnerPacket.IsDatagramFromPortTo(packet, ListenPort, peer.EndpointValue))
                return Drop(TunnelEvent.RoutingLoop, peer);
            var current = peer.Current;
            bool usable = current is not null && current.CanSend(now);
            if (!usable || peer.Staged.Count > 0)
            {
                // Keep order: anything already waiting goes first.
                StagePacketLocked(peer, packet);
                SendStagedLocked(peer, now);
                return Done(TunnelEvent.PacketStaged, peer);
            }
            if (!peer.EndpointValue.IsSet()) return Drop(TunnelEvent.NoEndpoint, peer);
            if (buffer.Length < total) return Drop(TunnelEvent.BufferTooSmall, peer);
            ticket = new SealTicket(current!, current!.SendCounter++, packetLength, padded);
            endpoint = peer.EndpointValue;
            AfterTransportSentLocked(peer, current, total, packetLength == 0, now);
        }
        return Outcome(TunnelAction.SendToNetwork, TunnelEvent.TransportSent, 0, total, endpoint, peer);
    }

    /// <summary>Header, zero padding, then ChaCha20-Poly1305 in place with the given counter.</summary>
    private static void Seal(Keypair keypair, ulong counter, Span<byte> buffer, int packetLength, int padded)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(buffer, (uint)MessageType.TransportData);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[Messages.TransportReceiver..], keypair.RemoteIndex);
        BinaryPrimitives.WriteUInt64LittleEndian(buffer[Messages.TransportCounter..], counter);
        buffer.Slice(Messages.TransportHeaderSize + packetLength, padded - packetLength).Clear();
        var plaintext = buffer.Slice(Messages.TransportHeaderSize, padded);
        keypair.Send.Seal(counter, plaintext, ReadOnlySpan<byte>.Empty, buffer.Slice(Messages.TransportHeaderSize, padded + Messages.TagSize));
    }

    private void StagePacketLocked(Peer peer, ReadOnlySpan<byte> packet)
    {
        if (peer.Staged.Count >= WireGuardConstants.MaxStagedPackets)
        {
            peer.Staged.DropOldest(); // as wireguard-go does, and counted
            Interlocked.Increment(ref _counters[(int)TunnelEvent.StagedOverflow * CounterStride]);
        }
        peer.Staged.Enqueue(packet);
    }

    /// <summary>wireguard-go SendStagedPackets: without a usable session start a handshake and keep
    /// the packets; with one, seal and emit them all.</summary>
    private void SendStagedLocked(Peer peer, long now)
    {
        if (peer.Staged.Count == 0) return;
        var keypair = peer.Current;
        if (keypair is null || !keypair.CanSend(now))
        {
            SendHandshakeInitiationLocked(peer, now, isRetry: false);
            return;
        }
        if (!peer.EndpointValue.IsSet())
        {
            Interlocked.Add(ref _counters[(int)TunnelEvent.NoEndpoint * CounterStride], peer.Staged.Count);
            peer.Staged.Clear();
            return;
        }
        var scratch = t_scratch ??= GC.AllocateUninitializedArray<byte>(65536 + 64, pinned: true);
        while (peer.Staged.Count > 0 && keypair.CanSend(now))
        {
            var (buffer, length) = peer.Staged.Dequeue();
            int padded = PaddedLength(length);
            int total = Messages.TransportHeaderSize + padded + Messages.TagSize;
            if (total > scratch.Length)
            {
                StagedQueue.Return(buffer);
                continue;
            }
            buffer.AsSpan(0, length).CopyTo(scratch.AsSpan(Messages.TransportHeaderSize));
            StagedQueue.Return(buffer);
            Seal(keypair, keypair.SendCounter++, scratch, length, padded); // under the lock: the keypair cannot retire
            _output.SendDatagram(peer.EndpointValue, scratch.AsSpan(0, total));
            Interlocked.Increment(ref _counters[(int)TunnelEvent.TransportSent * CounterStride]);
            AfterTransportSentLocked(peer, keypair, total, length == 0, now);
        }
    }

    private void AfterTransportSentLocked(Peer peer, Keypair keypair, int datagramLength, bool isKeepalive, long now)
    {
        peer.TxBytesValue += datagramLength;
        TimerAnyAuthenticatedPacketTraversal(peer, now);
        TimerAnyAuthenticatedPacketSent(peer);
        if (!isKeepalive) TimerDataSent(peer, now);
        // keepKeyFreshSending: rekey after messages (either side) or after time (initiator only).
        if (keypair.SendCounter > WireGuardConstants.RekeyAfterMessages ||
            (keypair.IsInitiator && now - keypair.Created > WireGuardConstants.RekeyAfterTime))
            SendHandshakeInitiationLocked(peer, now, isRetry: false);
    }

    private void SendKeepaliveLocked(Peer peer, long now)
    {
        if (peer.Staged.Count == 0) peer.Staged.Enqueue(ReadOnlySpan<byte>.Empty);
        SendStagedLocked(peer, now);
    }

    // ------------------------------------------------------------------ data path: inward

    /// <summary>
    /// Processes one datagram received from <paramref name="source"/>. Transport data is opened in
    /// place: DeliverToTun means the inner IP packet is at datagram[Offset, Offset+Length).
    /// Handshake messages are answered through <see cref="ITunnelOutput"/> (result None).
    /// </summary>
    public TunnelResult Decapsulate(in IpEndpoint source, Span<byte> datagram)
    {
        var result = BeginDecapsulate(source, datagram, out var ticket);
        return ticket.IsPending ? CompleteDecapsulate(ticket, source, datagram) : result;
    }

    /// <summary><see cref="Decapsulate(in IpEndpoint, Span{byte})"/> at the time <paramref name="now"/>
    /// (<see cref="ReadClock"/>, read once for a batch).</summary>
    public TunnelResult Decapsulate(in IpEndpoint source, Span<byte> datagram, long now)
    {
        var result = BeginDecapsulate(source, datagram, now, out var ticket);
        return ticket.IsPending ? CompleteDecapsulate(ticket, source, datagram) : result;
    }

    /// <summary>
    /// First half of a split receive, for pipelines that decrypt on worker threads (any thread,
    /// any order): transport data is authenticated and decrypted in place, and
    /// <paramref name="ticket"/> is pending; the caller must then run
    /// <see cref="CompleteDecapsulate"/> for the peer's datagrams in arrival order, which applies
    /// the replay window, roaming, timers and the inner-source check. Any other message is handled
    /// entirely here and the result is final.
    /// </summary>
    public TunnelResult BeginDecapsulate(in IpEndpoint source, Span<byte> datagram, out OpenTicket ticket)
    {
        if (Messages.Classify(datagram) == MessageType.TransportData) return OpenTransport(datagram, Now, out ticket);
        ticket = default;
        return ReceiveControl(source, datagram);
    }

    /// <summary><see cref="BeginDecapsulate(in IpEndpoint, Span{byte}, out OpenTicket)"/> at the time
    /// <paramref name="now"/> (<see cref="ReadClock"/>, read once for the batch); the ticket carries it
    /// to <see cref="CompleteDecapsulate"/>. Handshake messages read the clock themselves.</summary>
    public TunnelResult BeginDecapsulate(in IpEndpoint source, Span<byte> datagram, long now, out OpenTicket ticket)
    {
        if (Messages.Classify(datagram) == MessageType.TransportData) return OpenTransport(datagram, now, out ticket);
        ticket = default;
        return ReceiveControl(source, datagram);
    }

    /// <summary>
    /// Processes one handshake initiation, response or cookie reply (anything else is dropped as
    /// InvalidMessage). The daemon calls this from its handshake worker, never from the data path,
    /// so that a flood of handshakes costs the transport nothing but the copy into that worker's
    /// bounded queue; the worker reports its backlog first (<see cref="ReportHandshakeBacklog"/>).
    /// </summary>
    public TunnelResult ReceiveHandshake(in IpEndpoint source, ReadOnlySpan<byte> message) => ReceiveControl(source, message);

    /// <summary>True for the message types <see cref="ReceiveHandshake"/> takes.</summary>
    public static bool IsHandshake(ReadOnlySpan<byte> datagram) =>
        Messages.Classify(datagram) is MessageType.HandshakeInitiation or MessageType.HandshakeResponse or MessageType.CookieReply;

    /// <summary>Handshake messages, cookie replies and garbage: out of line, so that the transport
    /// path's frame stays small.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private TunnelResult ReceiveControl(in IpEndpoint source, ReadOnlySpan<byte> datagram)
    {
        switch (Messages.Classify(datagram))
        {
            case MessageType.HandshakeInitiation:
            case MessageType.HandshakeResponse:
                lock (_control) return Count(ReceiveHandshakeLocked(source, datagram));
            case MessageType.CookieReply:
                return Count(ReceiveCookieReply(datagram));
            default:
                return Drop(TunnelEvent.InvalidMessage);
        }
    }

    private TunnelResult OpenTransport(Span<byte> datagram, long now, out OpenTicket ticket)
    {
        ticket = default;
        uint receiver = BinaryPrimitives.ReadUInt32LittleEndian(datagram[Messages.TransportReceiver..]);
        if (!_index.TryGetValue(receiver, out var entry) || entry.Keypair is not { } keypair)
            return Drop(TunnelEvent.UnknownIndex);
        if (!keypair.CanReceive(now) || !keypair.TryAcquire()) return Drop(TunnelEvent.KeypairExpired, keypair.Peer);
        ulong counter = BinaryPrimitives.ReadUInt64LittleEndian(datagram[Messages.TransportCounter..]);
        bool authentic;
        try
        {
            // Outside the peer lock, like the send side.
            authentic = keypair.Receive.Open(counter, datagram[Messages.TransportHeaderSize..], ReadOnlySpan<byte>.Empty,
                datagram.Slice(Messages.TransportHeaderSize, datagram.Length - Messages.TransportOverhead));
        }
        finally
        {
            keypair.Release();
        }
        if (!authentic) return Drop(TunnelEvent.AuthenticationFailed, keypair.Peer);
        ticket = new OpenTicket(keypair, counter, now);
        return default;
    }

    /// <summary>Second half of a split receive (see <see cref="BeginDecapsulate"/>), on the same
    /// datagram span, in the order the peer's datagrams arrived.</summary>
    public TunnelResult CompleteDecapsulate(in OpenTicket ticket, in IpEndpoint source, Span<byte> datagram) =>
        CompleteDecapsulate(ticket, source, datagram, out _);

    /// <summary>
    /// <see cref="CompleteDecapsulate(in OpenTicket, in IpEndpoint, Span{byte})"/> that also gives the
    /// delivered packet's source address: the engine parsed the packet's IP header (version, length,
    /// source) and checked the source against the peer's allowed IPs, so a caller that reads the
    /// packet further (the overlay's VXLAN header) goes on from there instead of parsing it again.
    /// Only meaningful when the result is <see cref="TunnelAction.DeliverToTun"/>.
    /// </summary>
    public TunnelResult CompleteDecapsulate(in OpenTicket ticket, in IpEndpoint source, Span<byte> datagram, out IpAddress innerSource)
    {
        innerSource = default;
        var keypair = ticket.Keypair ?? throw new ArgumentException("The ticket has no open pending.", nameof(ticket));
        var peer = keypair.Peer;
        long now = ticket.Now;
        var plaintext = datagram.Slice(Messages.TransportHeaderSize, datagram.Length - Messages.TransportOverhead);
        lock (peer.Sync)
        {
            if (keypair.Retired) return Drop(TunnelEvent.KeypairExpired, peer);
            // Only an authenticated counter may move the window.
            if (!keypair.Replay.TryAccept(ticket.Counter))
                return Drop(TunnelEvent.Replayed, peer);

            peer.EndpointValue = source; // roaming
            peer.RxBytesValue += datagram.Length;
            if (ReceivedWithKeypairLocked(peer, keypair))
            {
                TimerHandshakeComplete(peer);
                SendStagedLocked(peer, now);
            }
            KeepKeyFreshReceivingLocked(peer, now);
            TimerAnyAuthenticatedPacketTraversal(peer, now);
            TimerAnyAuthenticatedPacketReceived(peer);
            if (plaintext.IsEmpty) return Done(TunnelEvent.KeepaliveReceived, peer);
            TimerDataReceived(peer, now);
        }
        // The source check reads only the immutable allowed-IPs trie: no lock needed.
        if (!InnerPacket.TryGetSource(plaintext, out var sourceBytes, out int innerLength) ||
            !IpAddress.TryFromBytes(sourceBytes, out innerSource))
            return Drop(TunnelEvent.InnerPacketInvalid, peer);
        if (!_allowedIps.TryLookup(innerSource, out var owner) || owner != peer)
            return Drop(TunnelEvent.InnerSourceNotAllowed, peer);
        return Outcome(TunnelAction.DeliverToTun, TunnelEvent.TransportDelivered, Messages.TransportHeaderSize, innerLength, source, peer);
    }

    private TunnelResult ReceiveHandshakeLocked(in IpEndpoint source, ReadOnlySpan<byte> message)
    {
        var identity = _identity;
        if (identity is null) return TunnelResult.Dropped(TunnelEvent.NoPrivateKey);
        long now = Now;
        bool underLoad = UpdateLoad(now);
        if (!_cookieChecker.CheckMac1(message)) return TunnelResult.Dropped(TunnelEvent.BadMac1);
        if (underLoad)
        {
            if (!_cookieChecker.CheckMac2(message, source, now))
            {
                // Make the sender prove it owns its address before we spend a DH on it. One address
                // gets the rate limiter's share of replies (20 a second, burst 5): an initiator needs
                // one per retry (every RekeyTimeout), and a flood from one address then costs the
                // mac1 check here instead of a reply's AEAD, a send and the kernel's delivery each.
                if (!_cookieReplyLimiter.Allow(source.Address, now)) return TunnelResult.Dropped(TunnelEvent.CookieReplyRateLimited);
                Span<byte> reply = stackalloc byte[Messages.CookieReplySize];
                uint sender = BinaryPrimitives.ReadUInt32LittleEndian(message[4..]);
                _cookieChecker.CreateReply(message, sender, source, now, _random, reply);
                _output.SendDatagram(source, reply);
                return TunnelResult.Done(TunnelEvent.CookieReplySent);
            }
            if (!_rateLimiter.Allow(source.Address, now)) return TunnelResult.Dropped(TunnelEvent.RateLimited);
        }
        return message.Length == Messages.InitiationSize
            ? ReceiveInitiationLocked(source, message, identity, now)
            : ReceiveResponseLocked(source, message, identity, now);
    }

    /// <summary>Tracks handshake load: above the per-second threshold (or a reported backlog of
    /// 128+) the engine stays under load for UnderLoadAfterTime.</summary>
    private bool UpdateLoad(long now)
    {
        if (now - _loadWindowStart >= WireGuardConstants.Second)
        {
            _loadWindowStart = now;
            _loadWindowCount = 0;
        }
        _loadWindowCount++;
        if (_loadWindowCount > _underLoadThreshold || _reportedBacklog >= HandshakeBacklogUnderLoad)
            _underLoadUntil = now + WireGuardConstants.UnderLoadAfterTime;
        return now < _underLoadUntil;
    }

    /// <summary>True while the engine demands cookies (mac2) on handshake messages.</summary>
    public bool IsUnderLoad { get { lock (_control) return Now < _underLoadUntil; } }

    private TunnelResult ReceiveInitiationLocked(in IpEndpoint source, ReadOnlySpan<byte> message, LocalIdentity identity, long now)
    {
        Span<byte> hash = stackalloc byte[32];
        Span<byte> chainKey = stackalloc byte[32];
        Span<byte> remoteStatic = stackalloc byte[32];
        Span<byte> timestamp = stackalloc byte[Tai64N.Size];
        try
        {
            if (!InitiationReader.TryDecryptStatic(message, identity.Private, identity.InitialHash, hash, chainKey, remoteStatic))
                return TunnelResult.Dropped(TunnelEvent.HandshakeFailed);
            if (!_peers.TryGetValue(new PublicKey(remoteStatic), out var peer))
                return TunnelResult.Dropped(TunnelEvent.HandshakeFailed);
            lock (peer.Sync)
            {
                var hs = peer.Handshake;
                if (peer.Removed || !hs.EnsureStaticStatic(identity.Private)) return TunnelResult.Dropped(TunnelEvent.HandshakeFailed, peer);
                if (!InitiationReader.TryDecryptTimestamp(message, hs.StaticStatic, hash, chainKey, timestamp))
                    return TunnelResult.Dropped(TunnelEvent.HandshakeFailed, peer);
                if (Tai64N.Compare(timestamp, hs.LastTimestamp) <= 0)
                    return TunnelResult.Dropped(TunnelEvent.StaleOrReplayedInitiation, peer);
                if (now - hs.LastInitiationConsumed <= WireGuardConstants.HandshakeInitiationRate)
                    return TunnelResult.Dropped(TunnelEvent.InitiationFlood, peer);

                timestamp.CopyTo(hs.LastTimestamp);
                hs.LastInitiationConsumed = now;
                hash.CopyTo(hs.Hash);
                chainKey.CopyTo(hs.ChainKey);
                message.Slice(Messages.InitEphemeral, 32).CopyTo(hs.RemoteEphemeral);
                hs.RemoteIndex = BinaryPrimitives.ReadUInt32LittleEndian(message[Messages.InitSender..]);
                hs.State = HandshakeState.InitiationConsumed;

                TimerAnyAuthenticatedPacketTraversal(peer, now);
                TimerAnyAuthenticatedPacketReceived(peer);
                peer.EndpointValue = source;
                peer.RxBytesValue += message.Length;
                SendHandshakeResponseLocked(peer, now);
                return TunnelResult.Done(TunnelEvent.InitiationProcessed, peer);
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(hash);
            CryptographicOperations.ZeroMemory(chainKey);
        }
    }

    private TunnelResult ReceiveResponseLocked(in IpEndpoint source, ReadOnlySpan<byte> message, LocalIdentity identity, long now)
    {
        uint receiver = BinaryPrimitives.ReadUInt32LittleEndian(message[Messages.RespReceiver..]);
        if (!_index.TryGetValue(receiver, out var entry) || entry.Keypair is not null)
            return TunnelResult.Dropped(TunnelEvent.UnknownIndex);
        var peer = entry.Peer;
        lock (peer.Sync)
        {
            var hs = peer.Handshake;
            if (peer.Removed || hs.LocalIndex != receiver || hs.State != HandshakeState.InitiationCreated)
                return TunnelResult.Dropped(TunnelEvent.UnexpectedResponse, peer);
            if (!hs.ConsumeResponse(message, identity.Private))
                return TunnelResult.Dropped(TunnelEvent.HandshakeFailed, peer);
            peer.EndpointValue = source;
            peer.RxBytesValue += message.Length;
            TimerAnyAuthenticatedPacketTraversal(peer, now);
            TimerAnyAuthenticatedPacketReceived(peer);
            if (!BeginSymmetricSessionLocked(peer, now)) return TunnelResult.Dropped(TunnelEvent.HandshakeFailed, peer);
            TimerSessionDerived(peer, now);
            TimerHandshakeComplete(peer);
            // Confirms the session to the responder (its keypair becomes current on our first
            // transport message) and flushes what waited for the handshake.
            SendKeepaliveLocked(peer, now);
            return TunnelResult.Done(TunnelEvent.ResponseProcessed, peer);
        }
    }

    private TunnelResult ReceiveCookieReply(ReadOnlySpan<byte> message)
    {
        uint receiver = BinaryPrimitives.ReadUInt32LittleEndian(message[Messages.CookieReceiver..]);
        if (!_index.TryGetValue(receiver, out var entry)) return TunnelResult.Dropped(TunnelEvent.UnknownIndex);
        var peer = entry.Peer;
        long now = Now;
        lock (peer.Sync)
        {
            if (peer.Removed || !peer.Cookies.ConsumeReply(message, now))
                return TunnelResult.Dropped(TunnelEvent.CookieReplyInvalid, peer);
            return TunnelResult.Done(TunnelEvent.CookieReplyProcessed, peer);
        }
    }

    // ------------------------------------------------------------------ handshake sending and keypairs

    private void SendHandshakeInitiationLocked(Peer peer, long now, bool isRetry)
    {
        if (!isRetry) peer.HandshakeAttempts = 0;
        var hs = peer.Handshake;
        if (now - hs.LastSentHandshake < WireGuardConstants.RekeyTimeout) return;
        var identity = _identity;
        if (identity is null || peer.Removed) return;
        if (!hs.EnsureStaticStatic(identity.Private)) return; // low-order peer key: never send
        hs.LastSentHandshake = now;

        Span<byte> message = stackalloc byte[Messages.InitiationSize];
        Span<byte> timestamp = stackalloc byte[Tai64N.Size];
        lock (_tai) _tai.Next(timestamp);
        ReplaceHandshakeIndexLocked(peer);
        if (!hs.CreateInitiation(identity.Public, timestamp, message))
        {
            ReleaseHandshakeIndexLocked(peer);
            hs.Clear();
            return;
        }
        peer.Cookies.AddMacs(message, now);
        TimerAnyAuthenticatedPacketTraversal(peer, now);
        TimerAnyAuthenticatedPacketSent(peer);
        if (peer.EndpointValue.IsSet())
        {
            _output.SendDatagram(peer.EndpointValue, message);
            peer.TxBytesValue += message.Length;
        }
        TimerHandshakeInitiated(peer, now);
    }

    private void SendHandshakeResponseLocked(Peer peer, long now)
    {
        var hs = peer.Handshake;
        hs.LastSentHandshake = now;
        Span<byte> message = stackalloc byte[Messages.ResponseSize];
        ReplaceHandshakeIndexLocked(peer);
        if (!hs.CreateResponse(message))
        {
            ReleaseHandshakeIndexLocked(peer);
            hs.Clear();
            return;
        }
        peer.Cookies.AddMacs(message, now);
        if (!BeginSymmetricSessionLocked(peer, now)) return;
        TimerSessionDerived(peer, now);
        TimerAnyAuthenticatedPacketTraversal(peer, now);
        TimerAnyAuthenticatedPacketSent(peer);
        if (peer.EndpointValue.IsSet())
        {
            _output.SendDatagram(peer.EndpointValue, message);
            peer.TxBytesValue += message.Length;
        }
    }

    private void ReplaceHandshakeIndexLocked(Peer peer)
    {
        ReleaseHandshakeIndexLocked(peer);
        var entry = new IndexEntry(peer, null);
        Span<byte> random = stackalloc byte[4];
        while (true)
        {
            _random.Fill(random);
            uint index = BinaryPrimitives.ReadUInt32LittleEndian(random);
            if (index != 0 && _index.TryAdd(index, entry))
            {
                peer.Handshake.LocalIndex = index;
                return;
            }
        }
    }

    private void ReleaseHandshakeIndexLocked(Peer peer)
    {
        uint old = peer.Handshake.LocalIndex;
        if (old != 0 && _index.TryGetValue(old, out var e) && e.Peer == peer && e.Keypair is null) _index.TryRemove(old, out _);
        peer.Handshake.LocalIndex = 0;
    }

    /// <summary>
    /// Turns the finished handshake into a keypair (wireguard-go BeginSymmetricSession). The
    /// initiator may use it at once; the responder parks it in "next" until the initiator's first
    /// transport message confirms it (<see cref="ReceivedWithKeypairLocked"/>).
    /// </summary>
    private bool BeginSymmetricSessionLocked(Peer peer, long now)
    {
        var hs = peer.Handshake;
        uint localIndex = hs.LocalIndex, remoteIndex = hs.RemoteIndex;
        Span<byte> sendKey = stackalloc byte[32];
        Span<byte> receiveKey = stackalloc byte[32];
        try
        {
            if (!hs.DeriveTransportKeys(sendKey, receiveKey, out bool isInitiator)) return false;
            var keypair = new Keypair(peer, sendKey, receiveKey, isInitiator, now, localIndex, remoteIndex);
            hs.LocalIndex = 0; // the index now belongs to the keypair
            _index[localIndex] = new IndexEntry(peer, keypair);
            if (isInitiator)
            {
                var previous = peer.Previous;
                if (peer.Next is { } next)
                {
                    peer.Next = null;
                    peer.Previous = next;
                    DeleteKeypair(peer.Current);
                }
                else
                {
                    peer.Previous = peer.Current;
                }
                DeleteKeypair(previous);
                peer.Current = keypair;
            }
            else
            {
                DeleteKeypair(peer.Next);
                peer.Next = keypair;
                DeleteKeypair(peer.Previous);
                peer.Previous = null;
            }
            return true;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(sendKey);
            CryptographicOperations.ZeroMemory(receiveKey);
        }
    }

    /// <summary>The confirmation rule: the first packet on "next" promotes it to current.</summary>
    private bool ReceivedWithKeypairLocked(Peer peer, Keypair received)
    {
        if (peer.Next != received) return false;
        DeleteKeypair(peer.Previous);
        peer.Previous = peer.Current;
        peer.Current = received;
        peer.Next = null;
        return true;
    }

    private void DeleteKeypair(Keypair? keypair)
    {
        if (keypair is null) return;
        if (_index.TryGetValue(keypair.LocalIndex, out var e) && e.Keypair == keypair) _index.TryRemove(keypair.LocalIndex, out _);
        keypair.Dispose();
    }

    private void ExpireCurrentKeypairsLocked(Peer peer, long now)
    {
        ReleaseHandshakeIndexLocked(peer);
        peer.Handshake.Clear();
        peer.Handshake.LastSentHandshake = now - (WireGuardConstants.RekeyTimeout + WireGuardConstants.Second);
        if (peer.Current is { } current) current.SendCounter = WireGuardConstants.RejectAfterMessages;
        if (peer.Next is { } next) next.SendCounter = WireGuardConstants.RejectAfterMessages;
    }

    /// <summary>Destroys every keypair and the handshake, drops staged packets (whitepaper: after 3 × RejectAfterTime).</summary>
    private void ZeroAndFlushAllLocked(Peer peer)
    {
        DeleteKeypair(peer.Previous);
        DeleteKeypair(peer.Current);
        DeleteKeypair(peer.Next);
        peer.Previous = peer.Current = peer.Next = null;
        ReleaseHandshakeIndexLocked(peer);
        peer.Handshake.Clear();
        peer.Staged.Clear();
    }

    private void KeepKeyFreshReceivingLocked(Peer peer, long now)
    {
        if (peer.SentLastMinuteHandshake) return;
        var current = peer.Current;
        if (current is not null && current.IsInitiator &&
            now - current.Created > WireGuardConstants.RejectAfterTime - WireGuardConstants.KeepaliveTimeout - WireGuardConstants.RekeyTimeout)
        {
            peer.SentLastMinuteHandshake = true;
            SendHandshakeInitiationLocked(peer, now, isRetry: false);
        }
    }

    // ------------------------------------------------------------------ timers (whitepaper 6, wireguard-go timers.go)

    /// <summary>
    /// Fires every expired peer timer. Call it periodically (the finer, the closer to the
    /// whitepaper's deadlines; 100 ms is plenty given the 0-333 ms jitter).
    /// </summary>
    public void Tick()
    {
        lock (_control)
        {
            long now = Now;
            foreach (var peer in _peers.Values)
            {
                lock (peer.Sync)
                {
                    if (peer.Removed) continue;
                    if (peer.RetransmitHandshakeAt <= now)
                    {
                        peer.RetransmitHandshakeAt = Peer.Disarmed;
                        ExpiredRetransmitHandshake(peer, now);
                    }
                    if (peer.SendKeepaliveAt <= now)
                    {
                        peer.SendKeepaliveAt = Peer.Disarmed;
                        SendKeepaliveLocked(peer, now);
                        if (peer.NeedAnotherKeepalive)
                        {
                            peer.NeedAnotherKeepalive = false;
                            peer.SendKeepaliveAt = now + WireGuardConstants.KeepaliveTimeout;
                        }
                    }
                    if (peer.NewHandshakeAt <= now)
                    {
                        // We sent data but heard nothing back for KeepaliveTimeout + RekeyTimeout.
                        peer.NewHandshakeAt = Peer.Disarmed;
                        SendHandshakeInitiationLocked(peer, now, isRetry: false);
                    }
                    if (peer.ZeroKeyMaterialAt <= now)
                    {
                        peer.ZeroKeyMaterialAt = Peer.Disarmed;
                        ZeroAndFlushAllLocked(peer);
                    }
                    if (peer.PersistentKeepaliveAt <= now)
                    {
                        peer.PersistentKeepaliveAt = Peer.Disarmed;
                        if (peer.PersistentKeepaliveValue > 0) SendKeepaliveLocked(peer, now);
                    }
                }
            }
        }
    }

    private void ExpiredRetransmitHandshake(Peer peer, long now)
    {
        if (peer.HandshakeAttempts > WireGuardConstants.MaxTimerHandshakes)
        {
            // Gave up after RekeyAttemptTime: drop what waited, and zero everything later.
            peer.SendKeepaliveAt = Peer.Disarmed;
            peer.Staged.Clear();
            if (peer.ZeroKeyMaterialAt == Peer.Disarmed)
                peer.ZeroKeyMaterialAt = now + 3 * WireGuardConstants.RejectAfterTime;
            return;
        }
        peer.HandshakeAttempts++;
        // As the Linux driver and wireguard-go: forget the source address the endpoint sticks to, in
        // case it is why no response came (the address moved); the kernel picks one by route.
        peer.EndpointValue = peer.EndpointValue.WithoutLocal();
        SendHandshakeInitiationLocked(peer, now, isRetry: true);
    }

    private long Jitter()
    {
        long ms = _random.NextJitterDraw() % (uint)(WireGuardConstants.RekeyTimeoutJitterMax / WireGuardConstants.Millisecond);
        return ms * WireGuardConstants.Millisecond;
    }

    private void TimerDataSent(Peer peer, long now)
    {
        if (peer.NewHandshakeAt == Peer.Disarmed)
            peer.NewHandshakeAt = now + WireGuardConstants.KeepaliveTimeout + WireGuardConstants.RekeyTimeout + Jitter();
    }

    private static void TimerDataReceived(Peer peer, long now)
    {
        if (peer.SendKeepaliveAt == Peer.Disarmed) peer.SendKeepaliveAt = now + WireGuardConstants.KeepaliveTimeout;
        else peer.NeedAnotherKeepalive = true;
    }

    private static void TimerAnyAuthenticatedPacketSent(Peer peer) => peer.SendKeepaliveAt = Peer.Disarmed;

    private static void TimerAnyAuthenticatedPacketReceived(Peer peer) => peer.NewHandshakeAt = Peer.Disarmed;

    private void TimerHandshakeInitiated(Peer peer, long now) =>
        peer.RetransmitHandshakeAt = now + WireGuardConstants.RekeyTimeout + Jitter();

    private void TimerHandshakeComplete(Peer peer)
    {
        peer.RetransmitHandshakeAt = Peer.Disarmed;
        peer.HandshakeAttempts = 0;
        peer.SentLastMinuteHandshake = false;
        long unixNanos = (_clock.GetUtcNow() - DateTimeOffset.UnixEpoch).Ticks * 100;
        Interlocked.Exchange(ref peer.LastHandshakeUnixNanos, unixNanos);
    }

    private static void TimerSessionDerived(Peer peer, long now) =>
        peer.ZeroKeyMaterialAt = now + 3 * WireGuardConstants.RejectAfterTime;

    private static void TimerAnyAuthenticatedPacketTraversal(Peer peer, long now)
    {
        if (peer.PersistentKeepaliveValue > 0)
            peer.PersistentKeepaliveAt = now + peer.PersistentKeepaliveValue * WireGuardConstants.Second;
    }

    // ------------------------------------------------------------------ misc

    // The data-path methods build their results through these out-of-line helpers: a result
    // holds a reference (the peer), so every TunnelResult temporary in a method is zeroed in its
    // prologue, and inlined result construction on each return path had grown the receive path's
    // frames to several hundred zeroed bytes per packet.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private TunnelResult Drop(TunnelEvent reason, Peer? peer = null)
    {
        Interlocked.Increment(ref _counters[(int)reason * CounterStride]);
        return new TunnelResult(TunnelAction.Drop, reason, 0, 0, default, peer);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private TunnelResult Done(TunnelEvent reason, Peer? peer = null)
    {
        Interlocked.Increment(ref _counters[(int)reason * CounterStride]);
        return new TunnelResult(TunnelAction.None, reason, 0, 0, default, peer);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private TunnelResult Outcome(TunnelAction action, TunnelEvent reason, int offset, int length, in IpEndpoint endpoint, Peer peer)
    {
        Interlocked.Increment(ref _counters[(int)reason * CounterStride]);
        return new TunnelResult(action, reason, offset, length, endpoint, peer);
    }

    private TunnelResult Count(TunnelResult result)
    {
        Interlocked.Increment(ref _counters[(int)result.Reason * CounterStride]);
        return result;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Zeroes all key material (sessions, handshakes, our private key).</summary>
    public void Dispose()
    {
        lock (_control)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var key in _peers.Keys.ToArray()) RemovePeerCore(key);
            _identity?.Dispose();
            _identity = null;
            _cookieChecker.SetLocalPublicKey(ReadOnlySpan<byte>.Empty);
        }
    }
}
