using System.Net;
using System.Net.Sockets;

namespace Gateway.Node.Overlay;

/// <summary>
/// Hands an IP packet the overlay made up (an ICMP unreachable for a VIP without backends, the
/// RST or ICMP error that ends a flow whose backend is gone) to this node's kernel, which routes
/// it to the local workload it is addressed to, exactly as a packet written to TUN would be.
/// </summary>
public interface IHostInjector
{
    /// <summary>Sends one complete IPv4 or IPv6 packet; false if it could not be sent (counted by the caller).</summary>
    bool Inject(ReadOnlySpan<byte> ipPacket);
}

/// <summary>
/// <see cref="IHostInjector"/> over raw IP sockets (IPPROTO_RAW: the packet carries its own
/// header, source address included) in the daemon's network namespace. Usable from any thread
/// (the control plane ends flows while the reader thread answers VIPs without backends); one
/// reusable socket address per family, so a send allocates nothing.
/// </summary>
public sealed class RawSocketInjector : IHostInjector, IDisposable
{
    private readonly Lock _lock = new();
    private readonly Socket? _v4;
    private readonly Socket? _v6;
    private readonly SocketAddress _address4 = new IPEndPoint(IPAddress.Any, 0).Serialize();
    private readonly SocketAddress _address6 = new IPEndPoint(IPAddress.IPv6Any, 0).Serialize();

    public RawSocketInjector()
    {
        _v4 = TryOpen(AddressFamily.InterNetwork);
        _v6 = TryOpen(AddressFamily.InterNetworkV6);
    }

    /// <summary>False when no raw socket could be opened (not root): nothing can be injected.</summary>
    public bool Available => _v4 is not null || _v6 is not null;

    private static Socket? TryOpen(AddressFamily family)
    {
        try
        {
            return new Socket(family, SocketType.Raw, ProtocolType.Raw);
        }
        catch (SocketException)
        {
            return null;
        }
    }

    public bool Inject(ReadOnlySpan<byte> ipPacket)
    {
        if (ipPacket.Length < 20)
        {
            return false;
        }
        bool v6 = ipPacket[0] >> 4 == 6;
        var socket = v6 ? _v6 : _v4;
        if (socket is null || (v6 && ipPacket.Length < 40))
        {
            return false;
        }
        lock (_lock)
        {
            var address = v6 ? _address6 : _address4;
            var raw = address.Buffer.Span;
            // sockaddr_in: family(2) port(2) addr(4); sockaddr_in6: family(2) port(2) flow(4) addr(16).
            if (v6)
            {
                ipPacket.Slice(24, 16).CopyTo(raw[8..]);
            }
            else
            {
                ipPacket.Slice(16, 4).CopyTo(raw[4..]);
            }
            try
            {
                return socket.SendTo(ipPacket, SocketFlags.None, address) == ipPacket.Length;
            }
            catch (SocketException)
            {
                return false;
            }
        }
    }

    public void Dispose()
    {
        _v4?.Dispose();
        _v6?.Dispose();
    }
}
