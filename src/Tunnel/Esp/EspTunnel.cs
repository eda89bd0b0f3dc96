using Gateway.Datapath;

namespace Gateway.Tunnel.Esp;

/// <summary>
/// IPsec ESP in tunnel mode between this node and its peers, keyed like Cilium: for every key in
/// use and every peer node, an outbound SA with key(local, peer) and an inbound SA with
/// key(peer, local) (<see cref="IpsecKeyDerivation"/>), SPI = key id. The current and the
/// retiring keys open. The current key seals, except during a rotation: to a peer not yet seen
/// sending with the new key, this node keeps sealing with the previous key until half the rotation
/// duration has passed (<see cref="IpsecKeyManager.CurrentKeySettled"/>), the way Cilium's
/// datapath sends with the older of its own and the peer's key (get_min_encrypt_key in
/// bpf/lib/encrypt.h, the peer's key id coming from its node record). So nodes that pick up the
/// new keys file within half the duration of each other lose no packet. The inner packet is an IP packet (in overlay mode the VXLAN datagram between
/// the node addresses, so the VNI, the sender's identity, travels encrypted); the caller adds or
/// strips the outer IP header (protocol 50) between the node addresses.
/// </summary>
/// <remarks>
/// No I/O and no clock of its own: the <see cref="IpsecKeyManager"/> decides which keys are in
/// use; <see cref="Refresh"/> applies its snapshot. SAs that stay keep their sequence counter and
/// replay window. Seal and open read an immutable table snapshot and allocate nothing; drops are
/// counted per <see cref="EspStatus"/> and never throw.
/// </remarks>
public sealed class EspTunnel : IDisposable
{
    private readonly IpsecKeyManager _keys;
    private readonly IpAddress _local;
    private readonly string _localBootId;
    private readonly bool _extendedSequenceNumbers;
    private readonly Lock _lock = new();
    private readonly Dictionary<IpAddress, string> _peers = [];
    private readonly long[] _sendCounts = new long[(int)EspStatus.Count];
    private readonly long[] _receiveCounts = new long[(int)EspStatus.Count];
    private Table _table = Table.Empty;
    private bool _disposed;

    /// <param name="localBootId">This node's boot id (36+ ASCII characters, a UUID). Gateway's
    /// daemon uses a fresh random UUID per run, because the SA state (the sequence counter) lives in
    /// the process: a restart must never reuse a key with a restarted counter.</param>
    public EspTunnel(IpsecKeyManager keys, IpAddress localAddress, string localBootId, bool extendedSequenceNumbers = true)
    {
        if (localBootId.Length < IpsecKeyDerivation.BootIdLength)
            throw new ArgumentException($"A boot id must be at least {IpsecKeyDerivation.BootIdLength} characters long (a UUID).", nameof(localBootId));
        _keys = keys;
        _local = localAddress;
        _localBootId = localBootId;
        _extendedSequenceNumbers = extendedSequenceNumbers;
    }

    public IpAddress LocalAddress => _local;

    /// <summary>The key id packets are sent with now (0 when no key is loaded).</summary>
    public byte CurrentSpi => _table.CurrentSpi;

    /// <summary>Keys in use at the last <see cref="Refresh"/>.</summary>
    public int KeyCount => _table.KeyCount;

    /// <summary>Adds a peer node or changes its boot id (new boot id: new SAs, counters from 1).</summary>
    public void SetPeer(IpAddress address, string bootId)
    {
        if (bootId.Length < IpsecKeyDerivation.BootIdLength)
            throw new ArgumentException($"A boot id must be at least {IpsecKeyDerivation.BootIdLength} characters long (a UUID).", nameof(bootId));
        lock (_lock)
        {
            _peers[address] = bootId;
            Rebuild();
        }
    }

    /// <summary>Replaces all peer nodes at once (address -> boot id) with one rebuild of the SA table:
    /// peers that stay with the same boot id keep their SAs; a new boot id gets new SAs; peers not
    /// named lose theirs.</summary>
    public void ReplacePeers(IReadOnlyDictionary<IpAddress, string> peers)
    {
        ArgumentNullException.ThrowIfNull(peers);
        foreach (string bootId in peers.Values)
        {
            if (bootId.Length < IpsecKeyDerivation.BootIdLength)
                throw new ArgumentException($"A boot id must be at least {IpsecKeyDerivation.BootIdLength} characters long (a UUID).", nameof(peers));
        }
        lock (_lock)
        {
            _peers.Clear();
            foreach ((IpAddress address, string bootId) in peers) _peers[address] = bootId;
            Rebuild();
        }
    }

    public void RemovePeer(IpAddress address)
    {
        lock (_lock)
        {
            if (_peers.Remove(address)) Rebuild();
        }
    }

    /// <summary>Applies the key manager's current snapshot (new key, retired key removed) and, once
    /// the new key has settled, sends with it to every peer. Cheap when nothing changed; the owner
    /// calls it after loading keys and on a timer.</summary>
    public void Refresh()
    {
        if (_keys.Keys.Version != _table.KeysVersion)
        {
            lock (_lock) Rebuild();
        }
        if (_keys.CurrentKeySettled)
        {
            foreach (PeerOutbound peer in _table.Outbound.Values) peer.Switched = true;
        }
    }

    /// <summary>The SA sealing to <paramref name="peer"/> now, if any (tests, the replay's esp_sa file).</summary>
    public EspSecurityAssociation? OutboundFor(IpAddress peer) => _table.Outbound.GetValueOrDefault(peer)?.Choose();

    /// <summary>The SA receiving <paramref name="spi"/> from <paramref name="peer"/>, if any.</summary>
    public EspSecurityAssociation? InboundFor(IpAddress peer, uint spi) => _table.Inbound.GetValueOrDefault((spi, peer))?.Sa;

    /// <summary>
    /// The derived keys of the SAs this node seals with now (one per peer), for writing a
    /// Wireshark esp_sa file next to a capture (<see cref="WiresharkEspSa"/>). These are secrets:
    /// only the replay, which works with made-up nodes, writes them out.
    /// </summary>
    public IReadOnlyList<EspSaKeys> ExportOutboundKeys()
    {
        var keys = new List<EspSaKeys>();
        lock (_lock)
        {
            foreach ((SaDescriptor d, EspSecurityAssociation sa) in _table.All)
            {
                if (!d.Outbound) continue;
                keys.Add(new EspSaKeys(_local, d.Peer, sa.Spi,
                    IpsecKeyDerivation.Derive(d.Key.KeyAndSalt, _local, d.Peer, _localBootId, d.PeerBootId), d.Key.IcvBits));
            }
        }
        return keys;
    }

    /// <summary>
    /// Seals the inner IP packet at buffer[offset .. offset+length) for <paramref name="peer"/>
    /// in place (16 bytes of headroom, up to 21 of tailroom). The result gives the ESP packet.
    /// </summary>
    public EspResult Encapsulate(IpAddress peer, Span<byte> buffer, int offset, int length)
    {
        EspResult result;
        byte nextHeader = (uint)offset < (uint)buffer.Length && length > 0 ? NextHeaderFor(buffer[offset]) : (byte)0;
        if (nextHeader == 0)
            result = EspResult.Fail(EspStatus.NotTunnelPayload);
        else if (!_table.Outbound.TryGetValue(peer, out PeerOutbound? outbound))
            result = EspResult.Fail(EspStatus.NoOutboundState);
        else
            result = outbound.Choose().Seal(buffer, offset, length, nextHeader);
        Interlocked.Increment(ref _sendCounts[(int)result.Status]);
        return result;
    }

    /// <summary>
    /// Opens an ESP packet (the payload of an IP protocol 50 packet from <paramref name="source"/>)
    /// in place. On success the result gives the inner IP packet inside <paramref name="espPacket"/>.
    /// </summary>
    public EspResult Decapsulate(IpAddress source, Span<byte> espPacket)
    {
        EspResult result = DecapsulateCore(source, espPacket);
        Interlocked.Increment(ref _receiveCounts[(int)result.Status]);
        return result;
    }

    private EspResult DecapsulateCore(IpAddress source, Span<byte> espPacket)
    {
        if (!EspSecurityAssociation.TryReadSpi(espPacket, out uint spi))
            return EspResult.Fail(EspStatus.Short);
        if (!_table.Inbound.TryGetValue((spi, source), out InboundEntry? entry))
            return EspResult.Fail(EspStatus.UnknownSpi);
        EspResult result = entry.Sa.Open(espPacket);
        if (!result.IsOk) return result;
        // The peer sends with our current key, so it has it: we may send with it too.
        if (entry.SwitchesOutbound is { Switched: false } outbound) outbound.Switched = true;
        // Tunnel mode carries a whole IP packet whose version matches the next header.
        if (result.Length == 0 || NextHeaderFor(espPacket[result.Offset]) != result.NextHeader)
            return EspResult.Fail(EspStatus.NotTunnelPayload, result.Sequence);
        return result;
    }

    private static byte NextHeaderFor(byte firstByte) => (firstByte >> 4) switch
    {
        4 => EspSecurityAssociation.NextHeaderIpv4,
        6 => EspSecurityAssociation.NextHeaderIpv6,
        _ => 0,
    };

    /// <summary>Packets sealed (Ok) or refused on the send side, by status.</summary>
    public long GetSendCount(EspStatus status) => Interlocked.Read(ref _sendCounts[(int)status]);

    /// <summary>Packets opened (Ok) or dropped on the receive side, by status.</summary>
    public long GetReceiveCount(EspStatus status) => Interlocked.Read(ref _receiveCounts[(int)status]);

    /// <summary>
    /// The <c>type</c> label of <c>gateway_ipsec_errors_total</c> for a drop, named after the
    /// kernel's xfrm_stat counters Cilium exports where one exists (XfrmInNoStates is "no_state",
    /// XfrmInStateProtoError "auth_failure", XfrmInStateSeqError "replay").
    /// </summary>
    public static string ErrorType(EspStatus status) => status switch
    {
        EspStatus.Short => "short",
        EspStatus.UnknownSpi => "no_state",
        EspStatus.Replay => "replay",
        EspStatus.AuthenticationFailed => "auth_failure",
        EspStatus.BadPadding => "bad_padding",
        EspStatus.NotTunnelPayload => "not_tunnel",
        EspStatus.BufferTooSmall => "buffer_too_small",
        EspStatus.SequenceExhausted => "seq_exhausted",
        EspStatus.NoOutboundState => "no_outbound_state",
        _ => "ok",
    };

    private void Rebuild()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        IpsecKeySet keys = _keys.Keys;
        Table old = _table;
        var outbound = new Dictionary<IpAddress, PeerOutbound>();
        var inbound = new Dictionary<(uint, IpAddress), InboundEntry>();
        var all = new List<(SaDescriptor, EspSecurityAssociation)>();
        foreach ((IpAddress peer, string bootId) in _peers)
        {
            PeerOutbound? peerOutbound = null;
            if (keys.Current is { } current)
            {
                EspSecurityAssociation sealing = Obtain(old, all, new SaDescriptor(true, current, peer, bootId));
                EspSecurityAssociation? previous = keys.Previous is { } p ? Obtain(old, all, new SaDescriptor(true, p, peer, bootId)) : null;
                PeerOutbound? before = old.Outbound.GetValueOrDefault(peer);
                peerOutbound = new PeerOutbound(sealing, previous)
                {
                    // Same key as before: keep whether the switch happened; a new key starts unswitched.
                    Switched = previous is null || (before is not null && before.Current == sealing && before.Switched),
                };
                outbound[peer] = peerOutbound;
            }
            foreach (IpsecKey key in keys.Accepted)
            {
                EspSecurityAssociation opening = Obtain(old, all, new SaDescriptor(false, key, peer, bootId));
                inbound[(key.Spi, peer)] = new InboundEntry(opening, key == keys.Current ? peerOutbound : null);
            }
        }
        Volatile.Write(ref _table, new Table(keys.Version, keys.Current?.Spi ?? 0, keys.Count, outbound, inbound, all));
        foreach ((_, EspSecurityAssociation sa) in old.All)
        {
            if (!all.Exists(x => x.Item2 == sa)) sa.Dispose();
        }
    }

    /// <summary>The SA for <paramref name="wanted"/>: the old table's if it has a matching one (its
    /// sequence counter or replay window carries on), else a new one with the derived key.</summary>
    private EspSecurityAssociation Obtain(Table old, List<(SaDescriptor, EspSecurityAssociation)> into, SaDescriptor wanted)
    {
        foreach ((SaDescriptor d, EspSecurityAssociation sa) in into)
        {
            if (d.Matches(wanted)) return sa;
        }
        foreach ((SaDescriptor d, EspSecurityAssociation sa) in old.All)
        {
            if (d.Matches(wanted))
            {
                into.Add((wanted, sa));
                return sa;
            }
        }
        byte[] keyAndSalt = wanted.Outbound
            ? IpsecKeyDerivation.Derive(wanted.Key.KeyAndSalt, _local, wanted.Peer, _localBootId, wanted.PeerBootId)
            : IpsecKeyDerivation.Derive(wanted.Key.KeyAndSalt, wanted.Peer, _local, wanted.PeerBootId, _localBootId);
        try
        {
            var created = new EspSecurityAssociation(wanted.Key.Spi, keyAndSalt, wanted.Key.IcvBits, _extendedSequenceNumbers);
            into.Add((wanted, created));
            return created;
        }
        finally
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(keyAndSalt);
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            Table old = _table;
            _table = Table.Empty;
            foreach ((_, EspSecurityAssociation sa) in old.All) sa.Dispose();
        }
    }

    private sealed record SaDescriptor(bool Outbound, IpsecKey Key, IpAddress Peer, string PeerBootId)
    {
        public bool Matches(SaDescriptor other) =>
            Outbound == other.Outbound && Key.SameAs(other.Key) && Peer == other.Peer && PeerBootId == other.PeerBootId;
    }

    /// <summary>A peer's sealing SAs: the current key's, and during a rotation the previous key's,
    /// used until <see cref="Switched"/>.</summary>
    private sealed class PeerOutbound(EspSecurityAssociation current, EspSecurityAssociation? previous)
    {
        private volatile bool _switched;

        public EspSecurityAssociation Current { get; } = current;
        public EspSecurityAssociation? Previous { get; } = previous;

        public bool Switched
        {
            get => _switched;
            set => _switched = value;
        }

        public EspSecurityAssociation Choose() => _switched || Previous is null ? Current : Previous;
    }

    /// <summary>An opening SA; for the current key, the peer whose sending switches on first use.</summary>
    private sealed record InboundEntry(EspSecurityAssociation Sa, PeerOutbound? SwitchesOutbound);

    private sealed class Table(
        long keysVersion, byte currentSpi, int keyCount,
        Dictionary<IpAddress, PeerOutbound> outbound,
        Dictionary<(uint, IpAddress), InboundEntry> inbound,
        List<(SaDescriptor, EspSecurityAssociation)> all)
    {
        public static readonly Table Empty = new(-1, 0, 0, [], [], []);
        public long KeysVersion { get; } = keysVersion;
        public byte CurrentSpi { get; } = currentSpi;
        public int KeyCount { get; } = keyCount;
        public Dictionary<IpAddress, PeerOutbound> Outbound { get; } = outbound;
        public Dictionary<(uint, IpAddress), InboundEntry> Inbound { get; } = inbound;
        public List<(SaDescriptor, EspSecurityAssociation)> All { get; } = all;
    }
}
