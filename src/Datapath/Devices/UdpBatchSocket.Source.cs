using System.Runtime.InteropServices;
using Gateway.Datapath.Devices.Interop;

namespace Gateway.Datapath.Devices;

/// <summary>
/// Source address stickiness, as the Linux driver (<c>struct endpoint</c>'s <c>src4</c>/<c>src6</c>)
/// and wireguard-go's sticky sockets (conn/sticky_linux.go) keep it: on a host with several
/// addresses, replies to a peer leave from the local address the peer's datagrams arrived on.
/// <list type="bullet">
/// <item>Receive: IP_PKTINFO (and IPV6_RECVPKTINFO on an IPv6 socket) make the kernel report each
/// datagram's local address and arrival interface in a control message next to UDP_GRO's; the
/// source endpoint handed up carries them (<see cref="IpEndpoint.LocalAddress"/>), and the engine
/// keeps the endpoint per peer, so roaming updates it.</item>
/// <item>Send: an endpoint with a local address goes out with an IP_PKTINFO (IPv4, also on a
/// dual-stack socket) or IPV6_PKTINFO control message behind UDP_SEGMENT's, fixing the source.
/// The interface index is passed only for IPv6 link-local sources, which need it: otherwise the
/// kernel still routes the datagram (the Linux driver, too, fixes only the address).</item>
/// <item>An address that has gone is cleared, as the Linux driver and wireguard-go's LinuxSocketBind
/// do. The kernel refuses such a source with EINVAL (IPv6), ENETUNREACH (IPv4: no route from a
/// source it does not have) or EADDRNOTAVAIL; the message is sent again without it, and
/// the bind stops using that address as a source until a datagram arrives on it again. The peer's
/// next authenticated datagram then moves its endpoint to the address it arrives on.</item>
/// </list>
/// All of it lives in the socket's native scratch: nothing is allocated per datagram.
/// </summary>
public sealed unsafe partial class UdpBatchSocket
{
    private const int SOL_IP = 0;
    private const int IP_PKTINFO = 8;
    private const int SOL_IPV6 = 41;
    private const int IPV6_RECVPKTINFO = 49;
    private const int IPV6_PKTINFO = 50;
    private const int EADDRNOTAVAIL = 99;
    private const int ENETUNREACH = 101;
    private const int InPktInfoSize = 12;         // struct in_pktinfo: ifindex, spec_dst, addr
    private const int In6PktInfoSize = 20;        // struct in6_pktinfo: addr[16], ifindex
    private const int SegmentControlSpace = 24;   // CMSG_SPACE(sizeof(u16))
    private const int MaxVanished = 4;

    private bool _sourceInfo;
    private readonly Lock _vanishedLock = new();
    private readonly IpAddress[] _vanished = new IpAddress[MaxVanished];
    private int _vanishedCount;
    private long _sourcesCleared;

    /// <summary>True when received datagrams report the local address they arrived on, so replies
    /// keep that source.</summary>
    public bool StickySources => _sourceInfo;

    /// <summary>Messages sent again without their source address because the kernel no longer had
    /// it (the address was removed).</summary>
    public long SourcesCleared => Interlocked.Read(ref _sourcesCleared);

    /// <summary>Asks the kernel for each datagram's local address (IP_PKTINFO; on an IPv6 socket
    /// IPV6_RECVPKTINFO, and IP_PKTINFO for the IPv4 peers of a dual-stack one).</summary>
    private bool EnableSourceInfo(int fd)
    {
        int one = 1;
        if (_v6 && LibC.SetSockOpt(fd, SOL_IPV6, IPV6_RECVPKTINFO, &one, sizeof(int)) != 0)
        {
            return false;
        }
        if ((!_v6 || _socket.DualMode) && LibC.SetSockOpt(fd, SOL_IP, IP_PKTINFO, &one, sizeof(int)) != 0)
        {
            return false;
        }
        return true;
    }

    /// <summary>
    /// Reads a received message's control messages: the UDP_GRO segment size (0 when absent), and
    /// the local address and interface (IP_PKTINFO/IPV6_PKTINFO) into <paramref name="source"/>.
    /// </summary>
    private int ReadControl(void* control, int length, ref IpEndpoint source)
    {
        byte* p = (byte*)control;
        int offset = 0;
        int groSize = 0;
        while (offset + CmsgHeader <= length)
        {
            long cmsgLength = *(long*)(p + offset);
            int level = *(int*)(p + offset + 8);
            int type = *(int*)(p + offset + 12);
            if (cmsgLength < CmsgHeader || offset + cmsgLength > length)
            {
                break;
            }
            byte* data = p + offset + CmsgHeader;
            if (level == SOL_UDP && type == UDP_GRO && cmsgLength >= CmsgHeader + sizeof(int))
            {
                groSize = *(int*)data;
            }
            else if (level == SOL_IP && type == IP_PKTINFO && cmsgLength >= CmsgHeader + InPktInfoSize)
            {
                // ipi_spec_dst: the local address a reply leaves from (the destination, for unicast).
                var local = IpAddress.FromBytes(new ReadOnlySpan<byte>(data + 4, 4));
                source = source.WithLocal(local, *(int*)data);
                Revive(local);
            }
            else if (level == SOL_IPV6 && type == IPV6_PKTINFO && cmsgLength >= CmsgHeader + In6PktInfoSize && !source.HasLocal)
            {
                // An IPv4 peer of a dual-stack socket may be reported here too, as ::ffff:a.b.c.d.
                var bytes = new ReadOnlySpan<byte>(data, 16);
                bool mapped = bytes[..10].IndexOfAnyExcept((byte)0) < 0 && bytes[10] == 0xff && bytes[11] == 0xff;
                var local = IpAddress.FromBytes(mapped ? bytes[12..] : bytes);
                source = source.WithLocal(local, *(int*)(data + 16));
                Revive(local);
            }
            offset += (int)((cmsgLength + 7) & ~7L);
        }
        return groSize;
    }

    /// <summary>
    /// Writes a message's control messages: UDP_SEGMENT when <paramref name="segmentSize"/> is not
    /// 0, then the source of <paramref name="destination"/> when it has one still present. Returns
    /// the control length (0 = none).
    /// </summary>
    private int WriteControl(byte* control, int segmentSize, in IpEndpoint destination)
    {
        int length = 0;
        if (segmentSize != 0)
        {
            new Span<byte>(control, SegmentControlSpace).Clear();
            *(long*)control = CmsgHeader + sizeof(ushort);   // CMSG_LEN(sizeof(u16))
            *(int*)(control + 8) = SOL_UDP;
            *(int*)(control + 12) = UDP_SEGMENT;
            *(ushort*)(control + CmsgHeader) = (ushort)segmentSize;
            length = SegmentControlSpace;
        }
        if (!destination.HasLocal || IsVanished(destination.LocalAddress))
        {
            return length;
        }
        byte* c = control + length;
        var local = destination.LocalAddress;
        if (local.IsV4)
        {
            // IP_PKTINFO is taken on an IPv4 socket and for the IPv4-mapped peers of a dual-stack one.
            new Span<byte>(c, CmsgHeader + InPktInfoSize + 4).Clear();   // CMSG_SPACE(12) = 32
            *(long*)c = CmsgHeader + InPktInfoSize;
            *(int*)(c + 8) = SOL_IP;
            *(int*)(c + 12) = IP_PKTINFO;
            local.WriteBytes(new Span<byte>(c + CmsgHeader + 4, 4));      // ipi_spec_dst
            return length + CmsgHeader + InPktInfoSize + 4;
        }
        new Span<byte>(c, CmsgHeader + In6PktInfoSize + 4).Clear();       // CMSG_SPACE(20) = 40
        *(long*)c = CmsgHeader + In6PktInfoSize;
        *(int*)(c + 8) = SOL_IPV6;
        *(int*)(c + 12) = IPV6_PKTINFO;
        local.WriteBytes(new Span<byte>(c + CmsgHeader, 16));
        // A link-local source names its link by the interface; any other address leaves the route free.
        bool linkLocal = (local.High >> 54) == (0xfe80UL >> 6);
        *(int*)(c + CmsgHeader + 16) = linkLocal ? destination.LocalInterface : 0;
        return length + CmsgHeader + In6PktInfoSize + 4;
    }

    /// <summary>
    /// After a send error on message <paramref name="at"/> of <paramref name="count"/> (message k
    /// goes to destinations[first[k]]): when it fixed a source address and the kernel refused it as
    /// gone (EINVAL, ENETUNREACH, EADDRNOTAVAIL), drops that control message from it and from the
    /// later messages with the same source, so they go again with the kernel's choice of source, and
    /// stops using the address. False when there was nothing to drop. (A peer that is unreachable
    /// anyway fails again without it and is skipped as before; its source is used again once a
    /// datagram arrives on it.)
    /// </summary>
    private bool ClearSource(MMsgHdr* headers, int at, int count, ReadOnlySpan<int> first, ReadOnlySpan<IpEndpoint> destinations, int errno)
    {
        ref readonly var destination = ref destinations[first[at]];
        if (errno is not (LibC.EINVAL or EADDRNOTAVAIL or ENETUNREACH) || !destination.HasLocal || !StripSource(ref headers[at].Header))
        {
            return false;
        }
        var gone = destination.LocalAddress;
        for (int k = at + 1; k < count; k++)
        {
            ref readonly var later = ref destinations[first[k]];
            if (later.HasLocal && later.LocalAddress == gone)
            {
                StripSource(ref headers[k].Header);
            }
        }
        Vanish(gone);
        Interlocked.Increment(ref _sourcesCleared);
        return true;
    }

    /// <summary>Drops the source control message behind UDP_SEGMENT's (or alone); false when none.</summary>
    private static bool StripSource(ref MsgHdr header)
    {
        if (header.ControlLength == 0)
        {
            return false;
        }
        byte* control = (byte*)header.Control;
        bool segmented = *(int*)(control + 8) == SOL_UDP && *(int*)(control + 12) == UDP_SEGMENT;
        if (segmented && (int)header.ControlLength == SegmentControlSpace)
        {
            return false; // only UDP_SEGMENT
        }
        if (segmented)
        {
            header.ControlLength = SegmentControlSpace;
        }
        else
        {
            header.Control = null;
            header.ControlLength = 0;
        }
        return true;
    }

    private bool IsVanished(IpAddress local)
    {
        if (Volatile.Read(ref _vanishedCount) == 0)
        {
            return false;
        }
        lock (_vanishedLock)
        {
            return Array.IndexOf(_vanished, local, 0, _vanishedCount) >= 0;
        }
    }

    private void Vanish(IpAddress local)
    {
        lock (_vanishedLock)
        {
            if (Array.IndexOf(_vanished, local, 0, _vanishedCount) >= 0)
            {
                return;
            }
            if (_vanishedCount == MaxVanished)
            {
                // Forget the oldest: at worst one more refused send for it.
                Array.Copy(_vanished, 1, _vanished, 0, MaxVanished - 1);
                _vanishedCount--;
            }
            _vanished[_vanishedCount] = local;
            Volatile.Write(ref _vanishedCount, _vanishedCount + 1);
        }
    }

    /// <summary>A datagram arrived on <paramref name="local"/>: it exists (again) and may be a source.</summary>
    private void Revive(IpAddress local)
    {
        if (Volatile.Read(ref _vanishedCount) == 0)
        {
            return;
        }
        lock (_vanishedLock)
        {
            int at = Array.IndexOf(_vanished, local, 0, _vanishedCount);
            if (at >= 0)
            {
                Array.Copy(_vanished, at + 1, _vanished, at, _vanishedCount - at - 1);
                Volatile.Write(ref _vanishedCount, _vanishedCount - 1);
            }
        }
    }

    /// <summary>The bind's repair for <see cref="BatchSend"/>: message k goes to destinations[first[k]].</summary>
    private readonly ref struct SourceRetry(UdpBatchSocket socket, ReadOnlySpan<int> first, ReadOnlySpan<IpEndpoint> destinations) : ISendRetry
    {
        private readonly ReadOnlySpan<int> _first = first;
        private readonly ReadOnlySpan<IpEndpoint> _destinations = destinations;

        public bool Retry(MMsgHdr* headers, int at, int count, int errno) =>
            socket.ClearSource(headers, at, count, _first, _destinations, errno);
    }

    /// <summary>True when two sends may share one message: same peer and same source.</summary>
    private static bool SameRoute(in IpEndpoint a, in IpEndpoint b) => a == b && a.SameLocal(b);
}
