using System.Runtime.InteropServices;
using System.Text;
using Gateway.Datapath.Devices.Interop;
using Gateway.Datapath.Offload;

namespace Gateway.Datapath.Devices;

/// <summary>
/// A Linux TUN device (IFF_TUN | IFF_NO_PI): every read returns one IP packet, every write
/// injects one. The interface lives in the network namespace of the creating thread and
/// disappears when the last descriptor is closed. Addresses, MTU and routes are configured
/// separately (see Gateway.Node's link configuration).
/// <para>As an <see cref="IBatchTunDevice"/> it moves batches of pooled buffers, and with a vnet
/// header and offloads on it does the NIC's work in software, as wireguard-go's
/// tun/offload_linux.go does: TCP (TSO) and UDP (USO) super-packets read from the kernel are cut
/// into packets, checksums left partial are completed, and on write runs of one TCP or UDP
/// flow's packets are merged into one super-packet (GRO).</para>
/// </summary>
public sealed unsafe class TunDevice : BatchTunDevice
{
    private const nuint TUNSETIFF = 0x400454ca;
    private const short IFF_TUN = 0x0001;
    private const short IFF_NO_PI = 0x1000;
    private const short IFF_MULTI_QUEUE = 0x0100;
    private const short IFF_VNET_HDR = 0x4000;
    private const nuint TUNSETOFFLOAD = 0x400454d0;
    private const uint TUN_F_CSUM = 0x01;
    private const uint TUN_F_TSO4 = 0x02;
    private const uint TUN_F_TSO6 = 0x04;
    private const uint TUN_F_USO4 = 0x20;
    private const uint TUN_F_USO6 = 0x40;
    private const int IFNAMSIZ = 16;

    // struct ifreq: char ifr_name[IFNAMSIZ]; union { short ifr_flags; ... } padded to 40 bytes.
    [StructLayout(LayoutKind.Sequential, Size = 40)]
    private struct IfReq
    {
        public fixed byte Name[IFNAMSIZ];
        public short Flags;
    }

    private int _fd;
    private readonly Waker _waker = new();

    private TunDevice(int fd, string name, bool vnetHeader)
    {
        _fd = fd;
        Name = name;
        HasVnetHeader = vnetHeader;
    }

    /// <summary>Every read and write carries a 10-byte <c>virtio_net_hdr</c> in front of the packet
    /// (IFF_VNET_HDR); see <see cref="Offload.VirtioNetHeader"/>.</summary>
    public override bool HasVnetHeader { get; }

    /// <summary>True once the kernel accepted TCP segmentation and checksum offload: reads may then
    /// return TCP super-packets up to 64 KiB and packets with a partial checksum.</summary>
    /// <inheritdoc/>
    public override bool IsKernelDevice => true;

    /// <summary>The interface name the kernel assigned (a pattern like "gw%d" is expanded).</summary>
    public override string Name { get; }

    /// <summary>Creates (or attaches to) the TUN interface <paramref name="name"/>; with
    /// <paramref name="vnetHeader"/>, packets carry a virtio_net_hdr (needed for offloads).</summary>
    public static TunDevice Create(string name, bool multiQueue = false, bool vnetHeader = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        byte[] nameBytes = Encoding.ASCII.GetBytes(name);
        if (nameBytes.Length >= IFNAMSIZ || name.AsSpan().IndexOfAny(" /\t\n") >= 0)
        {
            throw new DeviceException($"'{name}' is not a valid interface name (at most 15 characters, no spaces or '/').");
        }
        int fd = LibC.Open("/dev/net/tun", LibC.O_RDWR | LibC.O_NONBLOCK | LibC.O_CLOEXEC);
        if (fd < 0)
        {
            throw DeviceException.FromErrno("cannot open /dev/net/tun", Marshal.GetLastPInvokeError());
        }
        IfReq request = default;
        nameBytes.CopyTo(new Span<byte>(request.Name, IFNAMSIZ));
        request.Flags = (short)(IFF_TUN | IFF_NO_PI | (multiQueue ? IFF_MULTI_QUEUE : 0) | (vnetHeader ? IFF_VNET_HDR : 0));
        if (LibC.Ioctl(fd, TUNSETIFF, &request) < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            LibC.Close(fd);
            throw DeviceException.FromErrno($"cannot create TUN interface '{name}'", errno);
        }
        var assigned = new ReadOnlySpan<byte>(request.Name, IFNAMSIZ);
        int end = assigned.IndexOf((byte)0);
        return new TunDevice(fd, Encoding.ASCII.GetString(end < 0 ? assigned : assigned[..end]), vnetHeader);
    }

    /// <summary>
    /// Asks the kernel for checksum offload and TCP segmentation offload for IPv4 and IPv6
    /// (TUNSETOFFLOAD with TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, as wireguard-go does). Needs a
    /// device with a vnet header. False, with nothing changed, when the kernel refuses.
    /// </summary>
    public bool TryEnableOffloads()
    {
        if (!HasVnetHeader)
        {
            throw new InvalidOperationException("Offloads need a device created with a vnet header.");
        }
        const uint tcp = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
        bool udp = LibC.Ioctl(_fd, TUNSETOFFLOAD, (void*)(nuint)(tcp | TUN_F_USO4 | TUN_F_USO6)) >= 0;
        if (!udp && LibC.Ioctl(_fd, TUNSETOFFLOAD, (void*)(nuint)tcp) < 0)
        {
            return false;
        }
        UseOffloads(udp);
        return true;
    }

    /// <summary>
    /// Reads one packet, waiting for it. Returns its length, or -1 once the device is closed.
    /// A buffer shorter than the packet receives a truncated copy (size buffers to the MTU).
    /// </summary>
    public override int Read(Span<byte> buffer)
    {
        while (true)
        {
            int fd = Volatile.Read(ref _fd);
            if (fd < 0)
            {
                return -1;
            }
            nint n;
            fixed (byte* p = buffer)
            {
                n = LibC.Read(fd, p, (nuint)buffer.Length);
            }
            if (n >= 0)
            {
                return (int)n;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (errno == LibC.EAGAIN)
            {
                if (!_waker.WaitFor(fd, LibC.POLLIN))
                {
                    return -1;
                }
                continue;
            }
            if (errno == LibC.EINTR)
            {
                continue;
            }
            if (errno == LibC.EBADF && Volatile.Read(ref _fd) < 0)
            {
                return -1;
            }
            throw DeviceException.FromErrno($"read from {Name}", errno);
        }
    }

    /// <summary>Reads one packet if one is queued; returns its length, 0 when none, -1 when closed.</summary>
    public override int TryRead(Span<byte> buffer)
    {
        int fd = Volatile.Read(ref _fd);
        if (fd < 0)
        {
            return -1;
        }
        nint n;
        fixed (byte* p = buffer)
        {
            n = LibC.Read(fd, p, (nuint)buffer.Length);
        }
        if (n >= 0)
        {
            return (int)n;
        }
        int errno = Marshal.GetLastPInvokeError();
        return errno is LibC.EAGAIN or LibC.EINTR ? 0 : throw DeviceException.FromErrno($"read from {Name}", errno);
    }

    /// <summary>Writes one IP packet into the kernel. Returns false if the device is closed.</summary>
    public override bool Write(ReadOnlySpan<byte> packet)
    {
        while (true)
        {
            int fd = Volatile.Read(ref _fd);
            if (fd < 0)
            {
                return false;
            }
            nint n;
            fixed (byte* p = packet)
            {
                n = LibC.Write(fd, p, (nuint)packet.Length);
            }
            if (n >= 0)
            {
                return true;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (errno == LibC.EINTR)
            {
                continue;
            }
            if (errno == LibC.EAGAIN)
            {
                if (!_waker.WaitFor(fd, LibC.POLLOUT))
                {
                    return false;
                }
                continue;
            }
            // The kernel rejects malformed packets with EINVAL; that is the packet's fault, not the device's.
            if (errno == LibC.EINVAL)
            {
                return false;
            }
            throw DeviceException.FromErrno($"write to {Name}", errno);
        }
    }

    /// <summary>Closes the device and wakes any thread blocked in <see cref="Read"/>.</summary>
    public override void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0)
        {
            _waker.Wake();
            LibC.Close(fd);
        }
    }
}
