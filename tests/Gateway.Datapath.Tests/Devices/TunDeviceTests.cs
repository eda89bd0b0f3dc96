using System.Buffers.Binary;
using Gateway.Datapath.Devices;

namespace Gateway.Datapath.Tests.Devices;

public class TunDeviceTests
{
    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void PingIntoTheDeviceIsReadAndAnsweredThroughIt(bool vnetHeader)
    {
        Skip.If(TestNamespace.SkipReason("/usr/bin/ping") is { } reason, TestNamespace.SkipReason("/usr/bin/ping"));
        using var ns = new TestNamespace();
        string tunName = $"gwtun{Environment.ProcessId % 100000}{(vnetHeader ? "v" : "")}";
        using var tun = NetworkNamespace.Run(ns.Name, () => TunDevice.Create(tunName, vnetHeader: vnetHeader));
        Assert.Equal(tunName, tun.Name);
        Assert.Equal(vnetHeader, tun.HasVnetHeader);
        if (vnetHeader)
        {
            Assert.True(tun.TryEnableOffloads(), "the kernel refused TUN offloads");
        }
        int front = vnetHeader ? Gateway.Datapath.Offload.VirtioNetHeader.Size : 0;
        int headers = 0;
        ns.Exec($"ip addr add 10.77.0.1/24 dev {tunName}");
        ns.Exec($"ip link set {tunName} up");

        // Answer echo requests to 10.77.0.2 from the device side, as a peer would.
        var responder = new Thread(() =>
        {
            var buffer = new byte[2048];
            while (true)
            {
                int n = tun.Read(buffer);
                if (n < 0)
                {
                    return;
                }
                if (vnetHeader)
                {
                    // An ICMP packet: no segmentation, no partial checksum.
                    var header = Gateway.Datapath.Offload.VirtioNetHeader.Read(buffer);
                    if (header.Gso == Gateway.Datapath.Offload.GsoType.None && !header.NeedsChecksum) Interlocked.Increment(ref headers);
                }
                var packet = buffer.AsSpan(front, n - front);
                if (n < 28 || packet[0] >> 4 != 4 || packet[9] != 1 || packet[20] != 8)
                {
                    continue; // not an ICMPv4 echo request (e.g. IPv6 router solicitations)
                }
                // Swap addresses, turn the request into a reply, fix checksums.
                var src = packet.Slice(12, 4).ToArray();
                packet.Slice(16, 4).CopyTo(packet.Slice(12, 4));
                src.CopyTo(packet.Slice(16, 4));
                packet[20] = 0;
                BinaryPrimitives.WriteUInt16BigEndian(packet.Slice(22), 0);
                BinaryPrimitives.WriteUInt16BigEndian(packet.Slice(22), Checksum(packet[20..]));
                BinaryPrimitives.WriteUInt16BigEndian(packet.Slice(10), 0);
                BinaryPrimitives.WriteUInt16BigEndian(packet.Slice(10), Checksum(packet[..20]));
                buffer.AsSpan(0, front).Clear(); // a zero virtio_net_hdr: a plain, complete packet
                Assert.True(tun.Write(buffer.AsSpan(0, front + packet.Length)));
            }
        }) { IsBackground = true };
        responder.Start();

        string output = ns.Exec("ping -c 3 -i 0.2 -W 2 10.77.0.2", check: false);
        tun.Dispose();
        Assert.True(responder.Join(TimeSpan.FromSeconds(5)), "Dispose must wake the blocked reader");
        Assert.Contains("3 received", output);
        if (vnetHeader) Assert.True(headers >= 3, $"expected plain virtio headers on the echo requests, saw {headers}");
    }

    [SkippableFact]
    public void RejectsBadNamesWithAClearMessage()
    {
        var e = Assert.Throws<DeviceException>(() => TunDevice.Create("this-name-is-far-too-long"));
        Assert.Contains("not a valid interface name", e.Message);
    }

    private static ushort Checksum(ReadOnlySpan<byte> data)
    {
        uint sum = 0;
        for (int i = 0; i + 1 < data.Length; i += 2)
        {
            sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        }
        if ((data.Length & 1) != 0)
        {
            sum += (uint)data[^1] << 8;
        }
        while (sum >> 16 != 0)
        {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        return (ushort)~sum;
    }
}
