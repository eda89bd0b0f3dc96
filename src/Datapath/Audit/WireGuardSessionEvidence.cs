using System.Buffers.Binary;

namespace Gateway.Datapath.Audit;

/// <summary>
/// What a capture proves about WireGuard sessions, so that a transport message whose length is
/// not 32 + 16k can still be recognised. WireGuard pads the plaintext to a multiple of 16 but
/// never beyond the tunnel MTU (wireguard-go: <c>paddedSize &gt; mtu → mtu</c>; the kernel's
/// <c>calculate_skb_padding</c> alike), so a full-size message is 32 + MTU bytes, whatever the
/// MTU. Such a "capped" message is only believed when the session it claims to belong to is
/// established by messages that are WireGuard by structure alone:
/// <list type="number">
/// <item>its receiver index was announced by the receiving endpoint in a handshake initiation or
/// response sent to the sender's address, or</item>
/// <item>the same direction of the same endpoint pair (addresses and ports) carried 16-aligned
/// transport messages with that receiver index, or</item>
/// <item>the endpoint pair carries structurally valid WireGuard and this session's capped
/// messages are consistent: at least <see cref="ConsistentMessages"/> of them, counters moving
/// forward (at most 1 % of steps outside the window).</item>
/// </list>
/// and its counter lies within the window of the session's previous counter (WireGuard's
/// counter only grows; reordering by parallel encryption stays inside the replay window).
/// A plaintext datagram starting with <c>04 00 00 00</c> between pod addresses matches none of
/// these: the session is bound to the exact underlay 4-tuple of an established WireGuard pair.
/// </summary>
internal sealed class WireGuardSessionEvidence
{
    /// <summary>Capped messages a session needs before rule 3 believes it.</summary>
    public const int ConsistentMessages = 8;
    /// <summary>How far a counter may fall behind the session's previous one (the replay window).</summary>
    public const ulong BackwardWindow = 8192;
    /// <summary>How far a counter may jump ahead (messages the capture missed, e.g. tcpdump drops).</summary>
    public const ulong ForwardWindow = 1UL << 24;

    private readonly HashSet<(IpAddress Announcer, ushort AnnouncerPort, IpAddress Peer, uint Index)> _announced = [];
    private readonly HashSet<Session> _aligned = [];
    private readonly HashSet<(IpAddress, ushort, IpAddress, ushort)> _structuralPairs = [];
    private readonly Dictionary<Session, CappedStats> _capped = [];
    private readonly Dictionary<Session, ulong> _lastAccepted = [];

    /// <summary>One direction of a session: sender endpoint, receiver endpoint, receiver index.</summary>
    internal readonly record struct Session(IpAddress Source, ushort SourcePort, IpAddress Destination, ushort DestinationPort, uint Index);

    private sealed class CappedStats
    {
        public long Messages;
        public long OutOfWindowSteps;
        public ulong LastCounter;
    }

    /// <summary>Reads the transport fields of a message that has the transport shape except for
    /// the 16-alignment: type word 4 (three zero reserved bytes) and at least 32 bytes.</summary>
    public static bool IsTransportShape(ReadOnlySpan<byte> udpPayload, int datagramLength, out uint receiver, out ulong counter)
    {
        receiver = 0;
        counter = 0;
        int length = datagramLength < 0 ? udpPayload.Length : datagramLength;
        if (udpPayload.Length < WireGuardHeader.TransportHeaderLength || length < WireGuardHeader.TransportMinLength ||
            BinaryPrimitives.ReadUInt32LittleEndian(udpPayload) != (uint)WireGuardMessageType.TransportData)
        {
            return false;
        }
        receiver = BinaryPrimitives.ReadUInt32LittleEndian(udpPayload.Slice(4));
        counter = BinaryPrimitives.ReadUInt64LittleEndian(udpPayload.Slice(8));
        return true;
    }

    /// <summary>Learns from a structurally valid WireGuard message.</summary>
    public void LearnStructural(in FlowKey key, in WireGuardHeader wg)
    {
        _structuralPairs.Add((key.Source, key.SourcePort, key.Destination, key.DestinationPort));
        switch (wg.MessageType)
        {
            case WireGuardMessageType.HandshakeInitiation:
            case WireGuardMessageType.HandshakeResponse:
                _announced.Add((key.Source, key.SourcePort, key.Destination, wg.SenderIndex));
                break;
            case WireGuardMessageType.TransportData:
                _aligned.Add(new Session(key.Source, key.SourcePort, key.Destination, key.DestinationPort, wg.ReceiverIndex));
                break;
        }
    }

    /// <summary>Learns from a transport-shaped message whose length is not 32 + 16k.</summary>
    public void LearnCapped(in FlowKey key, uint receiver, ulong counter)
    {
        var session = new Session(key.Source, key.SourcePort, key.Destination, key.DestinationPort, receiver);
        if (!_capped.TryGetValue(session, out CappedStats? stats))
        {
            stats = new CappedStats();
            _capped[session] = stats;
        }
        else if (!InWindow(stats.LastCounter, counter))
        {
            stats.OutOfWindowSteps++;
        }
        stats.Messages++;
        if (counter > stats.LastCounter || stats.Messages == 1)
        {
            stats.LastCounter = counter;
        }
    }

    /// <summary>
    /// Decides whether a capped transport message belongs to an established session (see the type's
    /// summary) and, if so, moves that session's counter on.
    /// </summary>
    public bool AcceptCapped(in FlowKey key, uint receiver, ulong counter)
    {
        var session = new Session(key.Source, key.SourcePort, key.Destination, key.DestinationPort, receiver);
        bool established =
            _announced.Contains((key.Destination, key.DestinationPort, key.Source, receiver)) ||
            _aligned.Contains(session) ||
            (PairIsStructural(key) && _capped.TryGetValue(session, out CappedStats? stats) &&
             stats.Messages >= ConsistentMessages && stats.OutOfWindowSteps * 100 <= stats.Messages);
        if (!established)
        {
            return false;
        }
        if (_lastAccepted.TryGetValue(session, out ulong last))
        {
            if (!InWindow(last, counter))
            {
                return false;
            }
            if (counter > last)
            {
                _lastAccepted[session] = counter;
            }
        }
        else
        {
            _lastAccepted[session] = counter;
        }
        return true;
    }

    private bool PairIsStructural(in FlowKey key) =>
        _structuralPairs.Contains((key.Source, key.SourcePort, key.Destination, key.DestinationPort)) ||
        _structuralPairs.Contains((key.Destination, key.DestinationPort, key.Source, key.SourcePort));

    private static bool InWindow(ulong previous, ulong counter) =>
        counter >= previous ? counter - previous <= ForwardWindow : previous - counter <= BackwardWindow;
}
