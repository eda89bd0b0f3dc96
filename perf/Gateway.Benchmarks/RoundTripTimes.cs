using System.Diagnostics;
using Gateway.Crypto;
using Gateway.Node.Overlay;
using Gateway.Node.Replay;
using Gateway.Tunnel;

namespace Gateway.Benchmarks;

/// <summary>
/// What `gateway replay` measures as "like for like", in bursts instead of whole passes, so that a
/// shared, loaded machine does not decide the figure: one 1,420-byte packet of the replay fixture's
/// established TCP flow goes node A -> node B (copy into the work buffer, <c>Outbound</c> on A,
/// <c>Inbound</c> on B, byte-for-byte check, as the replay's pipeline pass does), in bursts of 64
/// with one clock reading per burst (the replay's and the daemon's batch), alternating burst by
/// burst with the bare AEAD (seal then open, in place, the same plaintext length) and with plain
/// mode (WireGuard alone) and its bare AEAD. The 10th percentile of each stage's bursts is close to
/// what the code costs on a quiet core (bursts another process interrupted fall above it); "outside
/// the AEAD" = round trip p10 - bare seal+open p10, like for like = bare / round trip. The bare
/// AEAD runs over the lengths the engines seal (padded to 16 but not beyond their MTU).
/// <code>dotnet perf/Gateway.Benchmarks/bin/Release/net10.0/Gateway.Benchmarks.dll --round-trip [ROUNDS]</code>
/// (GATEWAY_AEAD=libsodium for the libsodium-only AEAD.)
/// </summary>
internal static class RoundTripTimes
{
    private static readonly int Burst = int.TryParse(Environment.GetEnvironmentVariable("RT_BURST"), out int b) && b > 0 ? b : 64;

    public static int Run(string[] args)
    {
        int rounds = args.Length > 1 && int.TryParse(args[1], out int r) && r > 0 ? r : 3000;
        string root = RepositoryRoot();
        var capture = ReplayCapture.Load(Path.Combine(root, "fixtures/replay/tcp-1420.pcap"));
        var policy = ReplayPolicy.Load(Path.Combine(root, "fixtures/replay/endpoints.yaml"), Path.Combine(root, "fixtures/replay/policy.yaml"));
        int index = Enumerable.Range(0, capture.Count).First(i => capture.FromA[i] && capture.Lengths[i] == 1420);
        byte[] packet = capture.Packet(index).ToArray();

        using var overlay = new ReplayPair(ReplayMode.Overlay, capture, policy, TimeProvider.System);
        using var plain = new ReplayPair(ReplayMode.Plain, capture, null, TimeProvider.System);
        overlay.Handshake();
        plain.Handshake();
        byte[] work = GC.AllocateUninitializedArray<byte>(OverlayPipeline.Headroom + packet.Length + 64, pinned: true);
        byte[] bare = GC.AllocateUninitializedArray<byte>(OverlayPipeline.Headroom + packet.Length + 64, pinned: true);
        byte[] keyBytes = new byte[32];
        System.Security.Cryptography.RandomNumberGenerator.Fill(keyBytes);
        using var key = new ChaCha20Poly1305Key(keyBytes);
        ulong counter = 0;
        // The flow's first packets, as the replay's warm-up pass sends them: conntrack holds it from here on.
        foreach (int i in Enumerable.Range(0, capture.Count).Take(16))
        {
            var sender = capture.FromA[i] ? overlay.PipelineA! : overlay.PipelineB!;
            var receiver = capture.FromA[i] ? overlay.PipelineB! : overlay.PipelineA!;
            capture.Packet(i).CopyTo(work.AsSpan(OverlayPipeline.Headroom));
            var sent = sender.Outbound(work, OverlayPipeline.Headroom, capture.Lengths[i]);
            if (sent.Action == OverlayAction.Send)
            {
                receiver.Inbound(capture.FromA[i] ? ReplayPair.UnderlayA : ReplayPair.UnderlayB, work.AsSpan(sent.Offset), sent.Length);
            }
            if (overlay.HasPending) overlay.Pump();
        }
        // What the engines seal: padded to 16 but never beyond their MTU (1,420), so the overlay's
        // 1,470-byte VXLAN datagram stays 1,470 bytes and plain mode's 1,420-byte packet 1,420.
        int overlayPlaintext = overlay.EngineA.PaddedLength(packet.Length + VxlanFrame.Overhead);
        int plainPlaintext = plain.EngineA.PaddedLength(packet.Length);
        int sixteenPadded = (packet.Length + VxlanFrame.Overhead + 15) & ~15;
        int failures = 0;

        void OverlayRoundTrip()
        {
            long now = overlay.EngineA.ReadClock();
            for (int i = 0; i < Burst; i++)
            {
                packet.CopyTo(work.AsSpan(OverlayPipeline.Headroom));
                var sent = overlay.PipelineA!.Outbound(work, OverlayPipeline.Headroom, packet.Length, now);
                var datagram = work.AsSpan(sent.Offset);
                var received = overlay.PipelineB!.Inbound(ReplayPair.UnderlayA, datagram, sent.Length, now);
                if (received.Action != OverlayAction.Deliver || !datagram.Slice(received.Offset, received.Length).SequenceEqual(packet)) failures++;
            }
        }

        void PlainRoundTrip()
        {
            long now = plain.EngineA.ReadClock();
            for (int i = 0; i < Burst; i++)
            {
                packet.CopyTo(work.AsSpan(Messages.TransportHeaderSize));
                var sent = plain.EngineA.EncapsulateInPlace(work, packet.Length, now);
                var datagram = work.AsSpan(sent.Offset, sent.Length);
                var received = plain.EngineB.Decapsulate(ReplayPair.UnderlayA, datagram, now);
                if (received.Action != TunnelAction.DeliverToTun || !datagram.Slice(received.Offset, received.Length).SequenceEqual(packet)) failures++;
            }
        }

        void Bare(int plaintext)
        {
            var span = bare.AsSpan(Messages.TransportHeaderSize, plaintext + ChaCha20Poly1305Key.TagSize);
            for (int i = 0; i < Burst; i++)
            {
                key.Seal(counter, span[..plaintext], default, span);
                if (!key.Open(counter, span, default, span[..plaintext])) failures++;
                counter++;
            }
        }

        void BareSeal(int plaintext)
        {
            var span = bare.AsSpan(Messages.TransportHeaderSize, plaintext + ChaCha20Poly1305Key.TagSize);
            for (int i = 0; i < Burst; i++)
            {
                key.Seal(counter++, span[..plaintext], default, span);
            }
        }

        // The sending node alone (the receiver's replay window slides past the counters it never saw).
        void OverlaySend()
        {
            long now = overlay.EngineA.ReadClock();
            for (int i = 0; i < Burst; i++)
            {
                packet.CopyTo(work.AsSpan(OverlayPipeline.Headroom));
                if (overlay.PipelineA!.Outbound(work, OverlayPipeline.Headroom, packet.Length, now).Action != OverlayAction.Send) failures++;
            }
        }

        void PlainSend()
        {
            long now = plain.EngineA.ReadClock();
            for (int i = 0; i < Burst; i++)
            {
                packet.CopyTo(work.AsSpan(Messages.TransportHeaderSize));
                if (plain.EngineA.EncapsulateInPlace(work, packet.Length, now).Action != TunnelAction.SendToNetwork) failures++;
            }
        }

        // The overlay's own work without the AEAD (BeginOutbound up to the seal, then the receiver's
        // AcceptInbound on the opened datagram), alone and with a bare seal+open per packet: the
        // second minus the first minus the bare AEAD is what the two cost each other in situ.
        packet.CopyTo(work.AsSpan(OverlayPipeline.Headroom));
        var framed = overlay.PipelineA!.FrameOutbound(work, OverlayPipeline.Headroom, packet.Length, overlay.EngineA.ReadClock(), out _);
        byte[] frame = work.AsSpan(framed.Offset, framed.Length).ToArray();
        var senderKey = overlay.PipelineB!.Peers.First().PublicKey;

        void OverlayWork(bool aead)
        {
            long now = overlay.EngineA.ReadClock();
            var span = bare.AsSpan(Messages.TransportHeaderSize, overlayPlaintext + ChaCha20Poly1305Key.TagSize);
            for (int i = 0; i < Burst; i++)
            {
                packet.CopyTo(work.AsSpan(OverlayPipeline.Headroom));
                var r = overlay.PipelineA!.BeginOutbound(work, OverlayPipeline.Headroom, packet.Length, now, out _);
                if (aead)
                {
                    key.Seal(counter, span[..overlayPlaintext], default, span);
                    if (!key.Open(counter, span, default, span[..overlayPlaintext])) failures++;
                    counter++;
                }
                var a = overlay.PipelineB!.AcceptInbound(frame, 0, frame.Length, senderKey, TunnelEvent.TransportDelivered, now, ReplayPair.TunnelA);
                if (r.Action != OverlayAction.Send || a.Action != OverlayAction.Deliver) failures++;
            }
        }

        // The replay's pipeline pass in bursts: consecutive packets of the capture in its order (both
        // directions, the capture's 727 KB read as the replay reads it), against the bare AEAD over the
        // same lengths; and the same over a copy of the first 64 packets only (92 KB: stays in L2).
        int cursor = 0;
        int hotCount = Math.Min(64, capture.Count);
        byte[] hot = new byte[hotCount * 1536];
        for (int i = 0; i < hotCount; i++) capture.Packet(i).CopyTo(hot.AsSpan(i * 1536));

        void CaptureRoundTrips(bool hotCopy)
        {
            long now = overlay.EngineA.ReadClock();
            for (int b = 0; b < Burst; b++)
            {
                int i = hotCopy ? (cursor + b) % hotCount : (cursor + b) % capture.Count;
                bool fromA = capture.FromA[i];
                var original = hotCopy ? hot.AsSpan(i * 1536, capture.Lengths[i]) : capture.Packet(i);
                original.CopyTo(work.AsSpan(OverlayPipeline.Headroom));
                var sent = (fromA ? overlay.PipelineA! : overlay.PipelineB!).Outbound(work, OverlayPipeline.Headroom, original.Length, now);
                if (sent.Action != OverlayAction.Send) { failures++; continue; }
                var datagram = work.AsSpan(sent.Offset);
                var received = (fromA ? overlay.PipelineB! : overlay.PipelineA!).Inbound(fromA ? ReplayPair.UnderlayA : ReplayPair.UnderlayB, datagram, sent.Length, now);
                if (received.Action != OverlayAction.Deliver || !datagram.Slice(received.Offset, received.Length).SequenceEqual(original)) failures++;
            }
            if (overlay.HasPending) overlay.Pump();
        }

        void CaptureBare(bool hotCopy)
        {
            for (int b = 0; b < Burst; b++)
            {
                int i = hotCopy ? (cursor + b) % hotCount : (cursor + b) % capture.Count;
                int plaintext = overlay.EngineA.PaddedLength(capture.Lengths[i] + VxlanFrame.Overhead);
                var span = bare.AsSpan(Messages.TransportHeaderSize, plaintext + ChaCha20Poly1305Key.TagSize);
                key.Seal(counter, span[..plaintext], default, span);
                if (!key.Open(counter, span, default, span[..plaintext])) failures++;
                counter++;
            }
        }

        (string Name, Action Run)[] stages =
        [
            ("overlay round trip (copy, Outbound on A, Inbound on B, compare)", OverlayRoundTrip),
            ($"bare seal+open, {overlayPlaintext} B", () => Bare(overlayPlaintext)),
            ("plain round trip (copy, EncapsulateInPlace, Decapsulate, compare)", PlainRoundTrip),
            ($"bare seal+open, {plainPlaintext} B", () => Bare(plainPlaintext)),
            ("overlay work alone (copy, BeginOutbound, AcceptInbound)", () => OverlayWork(aead: false)),
            ("overlay work + bare seal+open per packet", () => OverlayWork(aead: true)),
            ("overlay sending node (copy, Outbound on A)", OverlaySend),
            ($"bare seal, {overlayPlaintext} B", () => BareSeal(overlayPlaintext)),
            ("plain sending node (copy, EncapsulateInPlace)", PlainSend),
            ($"bare seal, {plainPlaintext} B", () => BareSeal(plainPlaintext)),
            ($"bare seal+open, {sixteenPadded} B (the overlay datagram padded to 16 regardless of the MTU)", () => Bare(sixteenPadded)),
            ("overlay round trips of the capture in order (both directions), as the replay's pass", () => CaptureRoundTrips(hotCopy: false)),
            ("bare seal+open of the same packets' lengths", () => CaptureBare(hotCopy: false)),
            ("overlay round trips of the capture's first 64 packets, from a copy that stays in cache", () => CaptureRoundTrips(hotCopy: true)),
            ("bare seal+open of those packets' lengths", () => CaptureBare(hotCopy: true)),
            ("bare seal+open, 1408 B (22 ChaCha20 blocks: the largest multiple of 64 within the default MTU)", () => Bare(1408)),
        ];
        var ns = new double[stages.Length][];
        long[] allocated = new long[stages.Length];
        for (int s = 0; s < stages.Length; s++)
        {
            ns[s] = new double[rounds];
            for (int i = 0; i < 200; i++) stages[s].Run(); // tier-up
        }
        // RT_ONLY=<stage index>: that stage alone, for a profiler.
        int only = int.TryParse(Environment.GetEnvironmentVariable("RT_ONLY"), out int o) ? o : -1;
        for (int round = 0; round < rounds; round++)
        {
            for (int s = 0; s < stages.Length; s++)
            {
                if (only >= 0 && s != only) continue;
                long before = GC.GetAllocatedBytesForCurrentThread();
                long t0 = Stopwatch.GetTimestamp();
                stages[s].Run();
                long t1 = Stopwatch.GetTimestamp();
                allocated[s] += GC.GetAllocatedBytesForCurrentThread() - before;
                ns[s][round] = (t1 - t0) * 1e9 / Stopwatch.Frequency / Burst;
            }
            if (overlay.HasPending) overlay.Pump();
            if (plain.HasPending) plain.Pump();
            cursor = (cursor + Burst) % capture.Count;
        }
        Console.WriteLine($"Round trips of one 1420-byte TCP segment, node A -> node B; {rounds} bursts of {Burst} per stage, interleaved; AEAD: {ChaCha20Poly1305Key.Backend} (GATEWAY_AEAD={Environment.GetEnvironmentVariable("GATEWAY_AEAD") ?? "unset"}).");
        Console.WriteLine($"Load average at the end: {LoadAverage()}; failed round trips: {failures}");
        Console.WriteLine();
        Console.WriteLine("| stage | p10 ns/packet | median ns/packet | allocated B/packet |");
        Console.WriteLine("| --- | ---: | ---: | ---: |");
        var p10 = new double[stages.Length];
        var median = new double[stages.Length];
        for (int s = 0; s < stages.Length; s++)
        {
            Array.Sort(ns[s]);
            p10[s] = ns[s][rounds / 10];
            median[s] = ns[s][rounds / 2];
            Console.WriteLine($"| {stages[s].Name} | {p10[s]:F1} | {median[s]:F1} | {(double)allocated[s] / ((long)rounds * Burst):F1} |");
        }
        Console.WriteLine();
        Console.WriteLine($"overlay: outside the AEAD {p10[0] - p10[1]:F1} ns (p10), like for like {100 * p10[1] / p10[0]:F1}% (p10), {100 * median[1] / median[0]:F1}% (median)");
        Console.WriteLine($"plain:   outside the AEAD {p10[2] - p10[3]:F1} ns (p10), like for like {100 * p10[3] / p10[2]:F1}% (p10), {100 * median[3] / median[2]:F1}% (median)");
        Console.WriteLine($"in situ: overlay work + AEAD - work alone - bare AEAD = {p10[5] - p10[4] - p10[1]:F1} ns (p10), {median[5] - median[4] - median[1]:F1} ns (median)");
        Console.WriteLine($"sending node: overlay {p10[6] - p10[7]:F1} ns outside the seal, {100 * p10[7] / p10[6]:F1}% of it the seal; plain {p10[8] - p10[9]:F1} ns, {100 * p10[9] / p10[8]:F1}% (p10)");
        Console.WriteLine($"capture in order: outside the AEAD {p10[11] - p10[12]:F1} ns (p10), like for like {100 * p10[12] / p10[11]:F1}%; first 64 packets from cache: {p10[13] - p10[14]:F1} ns, {100 * p10[14] / p10[13]:F1}%");
        return failures == 0 ? 0 : 1;
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Gateway.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("run from inside the repository");
    }

    private static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "unknown";
        }
    }
}
