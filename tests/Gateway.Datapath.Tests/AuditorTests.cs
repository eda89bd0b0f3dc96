using Gateway.Datapath.Audit;

namespace Gateway.Datapath.Tests;

public class AuditorTests
{
    private static AuditReport Audit(string name, AuditOptions? options = null) =>
        CaptureAuditor.AuditFile(Path.Combine(RepoPaths.Captures, name), options);

    [Fact]
    public void RealWireGuardGoUnderlayCaptureIsEncrypted()
    {
        AuditReport r = Audit("wireguard-go-underlay.pcap");
        Assert.Equal("ENCRYPTED", r.Verdict);
        Assert.Equal(0, r.LeakPackets);
        WireGuardFlow flow = Assert.Single(r.WireGuardFlows);
        Assert.Equal(1, flow.Initiations);
        Assert.Equal(1, flow.Responses);
        Assert.True(flow.TransportMessages >= 6);   // 3 echo requests + 3 replies
        Assert.Equal(2, flow.ReceiverIndices);
        Assert.True(r.Counts[PacketClass.Other] >= 2);  // ARP
        Assert.False(r.LooksLikeTunnelInterface);
    }

    [Fact]
    public void RealLinuxVxlanCaptureWithDnsIsALeak()
    {
        AuditReport r = Audit("linux-vxlan-dns.pcap");
        Assert.Equal("LEAK", r.Verdict);
        Assert.True(r.LooksLikeTunnelInterface);
        Assert.Contains(r.Offenders, o => o.Vni == 42 && o.Inner is FlowKey k && k.DestinationPort == 53 &&
            k.Destination == IpAddress.Parse("10.244.1.20") && o.Outer.DestinationPort == 8472);
        Assert.All(r.OverlayFlows, f => Assert.Equal(42u, f.Vni));
    }

    [Fact]
    public void SyntheticWireGuardWithFragmentsAndIcmpErrorsIsEncrypted()
    {
        AuditReport r = Audit("synthetic-wireguard.pcap");
        Assert.Equal("ENCRYPTED", r.Verdict);
        Assert.Equal(14, r.Counts[PacketClass.WireGuard]);   // incl. the later fragment of a WireGuard datagram
        Assert.Equal(2, r.Counts[PacketClass.Other]);        // ARP + ICMP error quoting WireGuard
        WireGuardFlow f = Assert.Single(r.WireGuardFlows);
        Assert.Equal((2, 1, 1, 9), (f.Initiations, f.Responses, f.CookieReplies, f.TransportMessages));
        Assert.Equal(4ul, f.MaxCounter);
    }

    [Fact]
    public void SyntheticOverlayIsALeakWithHintAndInnerFlows()
    {
        AuditReport r = Audit("synthetic-vxlan-plaintext.pcap");
        Assert.Equal("LEAK", r.Verdict);
        Assert.Equal(4, r.Counts[PacketClass.PlaintextOverlay]);
        Assert.Equal(3, r.LeakPackets);   // the inner ARP is not cluster IP traffic
        Assert.True(r.LooksLikeTunnelInterface);
        Assert.Equal([42u, 7u, 300u], r.Offenders.Select(o => o.Vni!.Value).ToArray());
        Assert.Contains(r.OverlayFlows, f => f.Protocol == "Geneve" && f.Vni == 300);
    }

    [Fact]
    public void PlainPodTrafficIsALeakAndPublicTrafficIsOther()
    {
        AuditReport r = Audit("synthetic-plain-tcp-udp.pcap");
        Assert.Equal("LEAK", r.Verdict);
        Assert.Equal(4, r.Counts[PacketClass.PlaintextCluster]);
        Assert.Equal(1, r.Counts[PacketClass.Other]);
        Assert.False(r.LooksLikeTunnelInterface);
        // Narrow the cluster to the IPv4 pod range: the ULA pair is no longer cluster traffic.
        AuditReport narrow = Audit("synthetic-plain-tcp-udp.pcap", new AuditOptions { ClusterPrefixes = [IpPrefix.Parse("10.0.0.0/16")] });
        Assert.Equal(3, narrow.LeakPackets);
    }

    [Fact]
    public void RawIpAndSll2LinkTypesAreAudited()
    {
        AuditReport raw = Audit("synthetic-raw-ip-wireguard.pcap");
        Assert.Equal((LinkType.Raw, "ENCRYPTED", 5L), (raw.LinkType, raw.Verdict, raw.Counts[PacketClass.WireGuard]));
        AuditReport sll2 = Audit("synthetic-sll2-mixed.pcap");
        Assert.Equal((LinkType.LinuxSll2, "LEAK", 2L, 1L), (sll2.LinkType, sll2.Verdict, sll2.Counts[PacketClass.WireGuard], sll2.LeakPackets));
    }

    [Fact]
    public void TunnelPortOptionRevealsVxlanOnOtherPorts()
    {
        Assert.Equal("ENCRYPTED", Audit("synthetic-vxlan-custom-port.pcap").Verdict);
        AuditReport r = Audit("synthetic-vxlan-custom-port.pcap", new AuditOptions { TunnelPorts = [9999] });
        Assert.Equal("LEAK", r.Verdict);
        Assert.Equal(77u, Assert.Single(r.Offenders).Vni);
    }

    [Fact]
    public void SnapLengthCutWireGuardStillClassifiesByLengthFields()
    {
        var auditor = new CaptureAuditor(LinkType.Ethernet);
        byte[] frame = PacketFactory.Ethernet(PacketFactory.Ipv4(0xC0A80001, 0xC0A80002, IpProtocol.Udp,
            PacketFactory.Udp(51820, 51820, PacketFactory.WireGuard(new Random(1), WireGuardMessageType.HandshakeInitiation, sender: 1))));
        Assert.Equal(PacketClass.WireGuard, auditor.Add(frame.AsSpan(0, 96), DateTime.UnixEpoch, frame.Length));
        Assert.Equal(1, auditor.Report.TruncatedBySnapLength);
    }

    [Fact]
    public void OrphanLaterFragmentBetweenClusterAddressesCountsAsLeakButEspDoesNot()
    {
        var auditor = new CaptureAuditor(LinkType.Raw);
        byte[] later = PacketFactory.Ipv4(0x0A000001, 0x0A000002, IpProtocol.Udp, new byte[64], id: 9, fragmentOffset: 100);
        Assert.Equal(PacketClass.PlaintextCluster, auditor.Add(later, DateTime.UnixEpoch));
        byte[] esp = PacketFactory.Ipv4(0x0A000001, 0x0A000002, IpProtocol.Esp, new byte[64]);
        Assert.Equal(PacketClass.IpsecEsp, auditor.Add(esp, DateTime.UnixEpoch));
        Assert.Equal(1, auditor.Report.LeakPackets);
    }

    [Fact]
    public void MalformedPacketsAreUnparsableWithReasonNotLeaks()
    {
        var auditor = new CaptureAuditor(LinkType.Raw);
        byte[] lying = PacketFactory.Ipv4(0x0A000001, 0x0A000002, IpProtocol.Udp, PacketFactory.Udp(1, 2, [1]));
        lying[3] += 10;   // total length beyond the bytes present
        Assert.Equal(PacketClass.Unparsable, auditor.Add(lying, DateTime.UnixEpoch));
        Assert.Equal(1, auditor.Report.UnparsableReasons[ParseStatus.BadTotalLength]);
        Assert.False(auditor.Report.IsLeak);
    }

    [Fact]
    public void FragmentedVxlanDatagramCarryingPodTrafficIsALeakInEveryFragment()
    {
        var auditor = new CaptureAuditor(LinkType.Ethernet);
        byte[] innerIp = PacketFactory.Ipv4(0x0A000105, 0x0A000207, IpProtocol.Udp, PacketFactory.Udp(5000, 6000, new byte[1900]));
        byte[] outerUdp = PacketFactory.Udp(40000, 8472, PacketFactory.Vxlan(42, PacketFactory.Ethernet(innerIp)));
        byte[] first = PacketFactory.Ethernet(PacketFactory.Ipv4(0xC0A80001, 0xC0A80002, IpProtocol.Udp, outerUdp[..1480], id: 3, moreFragments: true));
        byte[] later = PacketFactory.Ethernet(PacketFactory.Ipv4(0xC0A80001, 0xC0A80002, IpProtocol.Udp, outerUdp[1480..], id: 3, fragmentOffset: 185));
        Assert.Equal(PacketClass.PlaintextOverlay, auditor.Add(first, DateTime.UnixEpoch));
        Assert.Equal(PacketClass.PlaintextOverlay, auditor.Add(later, DateTime.UnixEpoch));
        Assert.Equal(2, auditor.Report.LeakPackets);
        Offender o = auditor.Report.Offenders[0];
        Assert.Equal((42u, IpAddress.Parse("10.0.2.7")), (o.Vni!.Value, o.Inner!.Value.Destination));
    }
}
