using System.Diagnostics;
using System.Runtime.CompilerServices;
using Gateway.Crypto;
using Gateway.Datapath;
using Gateway.Node.Overlay;
using Gateway.Policy;
using Gateway.Tunnel;
using Gateway.Tunnel.Esp;

namespace Gateway.Node.Replay;

/// <summary>What to replay and how.</summary>
public sealed class ReplayOptions
{
    public ReplayMode Mode { get; init; } = ReplayMode.Overlay;
    /// <summary>WireGuard (default) or IPsec ESP between the two nodes.</summary>
    public ReplayEncryption Encryption { get; init; } = ReplayEncryption.WireGuard;
    /// <summary>IPsec only: worker 0 writes a Wireshark esp_sa file with both directions' SA keys there.</summary>
    public string? EspSaPath { get; init; }
    /// <summary>Independent node pairs, one thread each, over a partition of the flows.</summary>
    public int Workers { get; init; } = 1;
    /// <summary>Measured passes over the capture (after one warm-up pass).</summary>
    public int Loops { get; init; } = 1;
    /// <summary>Required in overlay mode.</summary>
    public ReplayPolicy? Policy { get; init; }
    /// <summary>Receives the handshake and the warm-up pass's sealed datagrams (one worker only).</summary>
    public IUnderlaySink? Sink { get; init; }
    /// <summary>Every n-th packet is timed per stage (n a power of two).</summary>
    public int SampleEvery { get; init; } = 8;
    /// <summary>When set, worker 0 writes its nodes' keys there (see <see cref="WireGuardKeyLog"/>).</summary>
    public string? KeyLogPath { get; init; }
    public TimeProvider Clock { get; init; } = TimeProvider.System;
}

/// <summary>Counts and timings of one replay run (aggregated over workers).</summary>
public sealed class ReplayReport
{
    public required ReplayMode Mode { get; init; }
    public ReplayEncryption Encryption { get; init; }
    public required int Workers { get; init; }
    public required int Loops { get; init; }
    public required int CapturePackets { get; init; }
    public required long CaptureBytes { get; init; }
    public required long SkippedFrames { get; init; }
    public required int Flows { get; init; }
    /// <summary>Packets and IP bytes pushed through the measured loops.</summary>
    public required long Packets { get; init; }
    public required long Bytes { get; init; }
    public required double Seconds { get; init; }
    public double Mpps => Packets / Seconds / 1e6;
    public double Gbps => Bytes * 8 / Seconds / 1e9;
    /// <summary>Thread time in the pipeline per packet (all workers' pipeline time / packets).</summary>
    public required double NsPerPacket { get; init; }
    /// <summary>Delivered on the far side and equal to the original byte for byte.</summary>
    public required long RoundTripped { get; init; }
    public required long Mismatched { get; init; }
    /// <summary>Neither sent nor dropped (e.g. staged waiting for a handshake); should be 0.</summary>
    public required long NotSent { get; init; }
    /// <summary>Drops by "egress:REASON" / "ingress:REASON" (Hubble names; TUNNEL_x for WireGuard's).</summary>
    public required SortedDictionary<string, long> Drops { get; init; }
    public long Dropped => Drops.Values.Sum();
    /// <summary>Handshake-layer datagrams (initiation, response, keepalive) over the whole run.</summary>
    public required long ControlDatagrams { get; init; }
    /// <summary>Handshake ephemeral keys recognised for the key log (worker 0); 0 with today's engine.</summary>
    public required int EphemeralKeys { get; init; }
    /// <summary>Per-stage ns/packet on the sampled subset; stage names depend on the mode.</summary>
    public required SortedDictionary<string, double> StageNs { get; init; }
    public required long SampledPackets { get; init; }
    public required long AllocatedBytes { get; init; }
    public double AllocatedBytesPerPacket => (double)AllocatedBytes / Packets;
    /// <summary>The bare AEAD over the same plaintext sizes, same threads, same run: ChaCha20-Poly1305
    /// for WireGuard, AES-GCM (rfc4106, 16-byte tag) for IPsec.</summary>
    public required double BareSealNsPerPacket { get; init; }
    public required double BareSealOpenNsPerPacket { get; init; }
    /// <summary>The pipeline and the bare AEAD per packet in thread CPU time (CLOCK_THREAD_CPUTIME_ID)
    /// rather than wall-clock time: on a shared machine the time other processes held the core is
    /// left out (their cache pollution is not). 0 where the clock is missing.</summary>
    public double CpuNsPerPacket { get; init; }
    public double BareSealCpuNsPerPacket { get; init; }
    public double BareSealOpenCpuNsPerPacket { get; init; }
    /// <summary><see cref="RatioToSealOpen"/> in thread CPU time.</summary>
    public double CpuRatioToSealOpen => CpuNsPerPacket > 0 ? BareSealOpenCpuNsPerPacket / CpuNsPerPacket : 0;
    public double BareSealMpps => Workers * 1e3 / BareSealNsPerPacket;
    /// <summary>Pipeline rate / bare seal rate (both directions of the pipeline run on one thread,
    /// so a seal-only baseline is the yardstick, not a like-for-like one).</summary>
    public double RatioToSeal => BareSealNsPerPacket / NsPerPacket;
    /// <summary>Pipeline rate / bare seal+open rate: like for like (a replayed packet is sealed and opened).</summary>
    public double RatioToSealOpen => BareSealOpenNsPerPacket / NsPerPacket;
    /// <summary>Sender side only: bare seal / the sampled cost of Outbound.</summary>
    public double SenderRatioToSeal => StageNs.TryGetValue("outbound_total", out double o) && o > 0 ? BareSealNsPerPacket / o : 0;
}

/// <summary>
/// Replays a loaded capture through the daemon's pipeline code: per worker, a <see cref="ReplayPair"/>
/// completes its handshake, runs one warm-up pass (checked and, if asked, recorded), then the measured
/// loop's body unmeasured until the JIT has settled (tiered compilation done), then the measured
/// loops interleaved with a sampled stage breakdown and the bare AEAD baselines (allocation measured
/// around the pipeline passes only). Workers start their measured loops together (a barrier).
/// </summary>
public static class ReplayRunner
{
    private const int Slack = 32 + 128; // behind the packet: padding + tag, and room for an ARP reply

    /// <summary>Packets per clock reading: the daemon reads the clock once per batch of its default
    /// size (a TUN read or a bind receive of up to 64 packets), and so does the replay.</summary>
    public const int ClockBatch = 64;

    /// <summary>The warm-up ends once the JIT has compiled nothing for this many milliseconds of it...</summary>
    internal const int JitQuietMs = 500;

    /// <summary>...or after this many milliseconds in any case.</summary>
    internal const int JitSettleMaxMs = 5_000;

    public static ReplayReport Run(ReplayCapture capture, ReplayOptions options, Action<long, long>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(capture);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Workers < 1 || options.Loops < 1)
            throw new ArgumentOutOfRangeException(nameof(options), "Workers and loops must be at least 1.");
        if (options.Mode == ReplayMode.Overlay && options.Policy is null)
            throw new ArgumentException("Overlay mode needs endpoints.", nameof(options));
        if (options.Encryption == ReplayEncryption.Ipsec && options.KeyLogPath is not null)
            throw new ArgumentException("The WireGuard key log does not apply to IPsec (use EspSaPath).", nameof(options));
        if (options.SampleEvery < 1 || (options.SampleEvery & (options.SampleEvery - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(options), "SampleEvery must be a power of two.");
        return RunCore(capture, options, progress);
    }

    private static ReplayReport RunCore(ReplayCapture capture, ReplayOptions options, Action<long, long>? progress)
    {
        int n = options.Workers;
        var partitions = new List<int>[n];
        for (int w = 0; w < n; w++) partitions[w] = [];
        for (int i = 0; i < capture.Count; i++) partitions[capture.Flows[i] % n].Add(i);

        using var barrier = new Barrier(n);
        var workers = new Worker[n];
        var threads = new Thread[n];
        Exception? failure = null;
        for (int w = 0; w < n; w++)
        {
            var worker = workers[w] = new Worker(capture, partitions[w].ToArray(), options, w == 0 ? options.Sink : null, w == 0 ? options.KeyLogPath : null,
                w == 0 ? options.EspSaPath : null);
            threads[w] = new Thread(() =>
            {
                try
                {
                    worker.Run(barrier);
                }
                catch (Exception e)
                {
                    failure ??= e;
                    barrier.RemoveParticipant();
                }
            }) { IsBackground = true, Name = $"replay-{w}" };
        }
        foreach (var t in threads) t.Start();
        long total = (long)capture.Count * (options.Loops + 1);
        foreach (var t in threads)
        {
            while (!t.Join(100))
            {
                progress?.Invoke(workers.Sum(x => Volatile.Read(ref x.Progress)), total);
            }
        }
        progress?.Invoke(total, total);
        if (failure is not null) throw new InvalidOperationException($"replay worker failed: {failure.Message}", failure);

        double NsPer(long ticks) => ticks * 1e9 / Stopwatch.Frequency / Math.Max(1, workers.Sum(w => w.MeasuredPackets));
        long packets = workers.Sum(w => w.MeasuredPackets);
        var drops = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var w in workers)
        {
            foreach (var (key, value) in w.DropCounts())
            {
                drops[key] = drops.GetValueOrDefault(key) + value;
            }
        }
        var stages = new SortedDictionary<string, double>(StringComparer.Ordinal);
        foreach (string stage in workers[0].StageNames)
        {
            long ticks = workers.Sum(w => w.StageTicks(stage));
            long count = workers.Sum(w => w.StageCount(stage));
            if (count > 0) stages[stage] = ticks * 1e9 / Stopwatch.Frequency / count;
        }
        return new ReplayReport
        {
            Mode = options.Mode,
            Encryption = options.Encryption,
            Workers = n,
            Loops = options.Loops,
            CapturePackets = capture.Count,
            CaptureBytes = capture.TotalBytes,
            SkippedFrames = capture.Skipped,
            Flows = capture.FlowCount,
            Packets = packets,
            Bytes = workers.Sum(w => w.MeasuredBytes),
            // Workers run side by side: the run lasts as long as the slowest one's pipeline passes.
            Seconds = workers.Max(w => w.PipelineTicks) / (double)Stopwatch.Frequency,
            NsPerPacket = NsPer(workers.Sum(w => w.PipelineTicks)),
            RoundTripped = workers.Sum(w => w.RoundTripped),
            Mismatched = workers.Sum(w => w.Mismatched),
            NotSent = workers.Sum(w => w.NotSent),
            Drops = drops,
            ControlDatagrams = workers.Sum(w => w.Pair?.ControlDatagrams ?? 0),
            StageNs = stages,
            EphemeralKeys = workers[0].EphemeralKeysLogged,
            SampledPackets = workers.Sum(w => w.StageCount("outbound_total")),
            AllocatedBytes = workers.Sum(w => w.AllocatedBytes),
            BareSealNsPerPacket = NsPer(workers.Sum(w => w.SealTicks)),
            BareSealOpenNsPerPacket = NsPer(workers.Sum(w => w.SealOpenTicks)),
            CpuNsPerPacket = (double)workers.Sum(w => w.PipelineCpuNs) / Math.Max(1, packets),
            BareSealCpuNsPerPacket = (double)workers.Sum(w => w.SealCpuNs) / Math.Max(1, packets),
            BareSealOpenCpuNsPerPacket = (double)workers.Sum(w => w.SealOpenCpuNs) / Math.Max(1, packets),
        };
    }

    /// <summary>One node pair on one thread. Everything it needs per packet is allocated up front.</summary>
    private sealed class Worker(ReplayCapture capture, int[] indices, ReplayOptions options, IUnderlaySink? sink, string? keyLogPath, string? espSaPath)
    {
        private readonly long[] _espDrops = new long[2 * (int)EspStatus.Count]; // [direction][EspStatus]
        private IEspUnderlaySink? _espSink;
        public EspReplayPair? EspPair;
        private readonly long[] _overlayDrops = new long[2 * 256]; // [direction][OverlayDrop]
        private readonly long[] _tunnelDrops = new long[2 * 256];  // [direction][TunnelEvent]
        private readonly Dictionary<string, (long Ticks, long Count)> _stages = [];
        private long _outTicks, _inTicks, _sampled;
        private byte[] _work = [], _bare = [];
        private long _parse, _vxlan, _seal, _open, _timestamp, _breakdownCount;
        private ulong _bareCounter;

        public long Progress;
        public ReplayPair? Pair;
        public long MeasuredPackets, MeasuredBytes, RoundTripped, Mismatched, NotSent, AllocatedBytes;
        public long PipelineTicks, SealTicks, SealOpenTicks;
        public long PipelineCpuNs, SealCpuNs, SealOpenCpuNs;
        public int EphemeralKeysLogged;

        public IEnumerable<string> StageNames => options.Encryption == ReplayEncryption.Ipsec
            ? ["outbound_total", "inbound_total"]
            : options.Mode == ReplayMode.Overlay
            ? ["outbound_total", "inbound_total", "parse_policy", "vxlan", "seal", "open_decap_ingress", "timestamp"]
            : ["outbound_total", "inbound_total", "seal", "open_decap"];

        public long StageTicks(string name) => _stages.GetValueOrDefault(name).Ticks;
        public long StageCount(string name) => _stages.GetValueOrDefault(name).Count;

        public IEnumerable<(string, long)> DropCounts()
        {
            for (int d = 0; d < 2; d++)
            {
                string dir = d == (int)Direction.Egress ? "egress" : "ingress";
                for (int r = 0; r < 256; r++)
                {
                    if (_overlayDrops[d * 256 + r] > 0) yield return ($"{dir}:{OverlayDropNames.Name((OverlayDrop)r)}", _overlayDrops[d * 256 + r]);
                    if (_tunnelDrops[d * 256 + r] > 0) yield return ($"{dir}:TUNNEL_{(TunnelEvent)r}", _tunnelDrops[d * 256 + r]);
                }
                for (int r = 0; r < (int)EspStatus.Count; r++)
                {
                    if (_espDrops[d * (int)EspStatus.Count + r] > 0) yield return ($"{dir}:ESP_{(EspStatus)r}", _espDrops[d * (int)EspStatus.Count + r]);
                }
            }
        }

        public void Run(Barrier barrier)
        {
            if (options.Encryption == ReplayEncryption.Ipsec)
            {
                RunIpsec(barrier);
                return;
            }
            using var pair = Pair = new ReplayPair(options.Mode, capture, options.Policy, options.Clock, sink);
            _work = GC.AllocateUninitializedArray<byte>(OverlayPipeline.Headroom + capture.MaxLength + Slack, pinned: true);
            _bare = GC.AllocateUninitializedArray<byte>(OverlayPipeline.Headroom + capture.MaxLength + Slack, pinned: true);
            pair.Handshake();

            // Warm-up: every path JIT-compiled, conntrack populated, every packet checked; recorded
            // when a sink is attached. Then the measured loop's body, unmeasured, until tiering settles.
            Pass(measure: false, sample: false);
            pair.Sink = null;
            var keyBytes = GC.AllocateArray<byte>(32, pinned: true);
            System.Security.Cryptography.RandomNumberGenerator.Fill(keyBytes);
            using var bareKey = new ChaCha20Poly1305Key(keyBytes);
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(keyBytes);
            BareAead(bareKey, open: true); // warm-up of the baseline too
            SettleJit(() =>
            {
                Pass(measure: false, sample: true);
                if (options.Mode == ReplayMode.Overlay) Breakdown();
                BareAead(bareKey, open: false);
                BareAead(bareKey, open: true);
            });
            ResetCounts(_tunnelDrops);
            barrier.SignalAndWait();

            MeasuredLoops(() => Pass(measure: true, sample: true), options.Mode == ReplayMode.Overlay ? Breakdown : null,
                open => BareAead(bareKey, open));
            // At the end, so that every handshake of the run is covered.
            if (keyLogPath is not null) WireGuardKeyLog.Write(keyLogPath, pair);
            EphemeralKeysLogged = pair.EphemeralKeys.Count;
            _stages["outbound_total"] = (_outTicks, _sampled);
            _stages["inbound_total"] = (_inTicks, _sampled);
            if (options.Mode == ReplayMode.Plain)
            {
                _stages["seal"] = (_outTicks, _sampled);
                _stages["open_decap"] = (_inTicks, _sampled);
            }
            else
            {
                _stages["parse_policy"] = (_parse, _breakdownCount);
                _stages["vxlan"] = (_vxlan, _breakdownCount);
                _stages["seal"] = (_seal, _breakdownCount);
                _stages["open_decap_ingress"] = (_open, _breakdownCount);
                _stages["timestamp"] = (_timestamp, _breakdownCount);
            }
        }

        /// <summary>Forgets what the warm-up counted (verdicts, drops of the overlay and of
        /// <paramref name="encryptionDrops"/>, the sampled stage times) before the measured loops.</summary>
        private void ResetCounts(Array encryptionDrops)
        {
            Array.Clear(_overlayDrops);
            Array.Clear(encryptionDrops);
            RoundTripped = Mismatched = NotSent = 0;
            _outTicks = _inTicks = _sampled = 0;
            _parse = _vxlan = _seal = _open = _timestamp = _breakdownCount = 0;
        }

        /// <summary>
        /// Runs <paramref name="loop"/> (the measured loop's body) unmeasured until the JIT has
        /// compiled nothing new for <see cref="JitQuietMs"/> ms of it (at least three times, at most
        /// <see cref="JitSettleMaxMs"/> ms). Tiered compilation replaces a method's first,
        /// unoptimized code only after it has run a while: counting calls starts once no method
        /// has been compiled for 100 ms, and the optimized code is compiled in the background. One
        /// warm-up pass (a few milliseconds) leaves the first measured loops, hundreds of
        /// milliseconds of them on a loaded machine, on that unoptimized code, which raised the
        /// mean of a 400-loop run by several hundred ns per packet. Progress is not advanced.
        /// </summary>
        private void SettleJit(Action loop)
        {
            long progress = Volatile.Read(ref Progress);
            var clock = Stopwatch.StartNew();
            long compiled = System.Runtime.JitInfo.GetCompiledMethodCount();
            long quietSince = 0;
            for (int loops = 1; clock.ElapsedMilliseconds < JitSettleMaxMs; loops++)
            {
                loop();
                Volatile.Write(ref Progress, progress); // the passes advance it; the warm-up is not counted
                long now = System.Runtime.JitInfo.GetCompiledMethodCount();
                if (now != compiled)
                {
                    compiled = now;
                    quietSince = clock.ElapsedMilliseconds;
                }
                else if (loops >= 3 && clock.ElapsedMilliseconds - quietSince >= JitQuietMs)
                {
                    break;
                }
            }
        }

        /// <summary>
        /// The measured loops. The machine is shared: the pipeline and its yardsticks are
        /// interleaved loop by loop, so load that comes and goes weighs on both alike; allocation is
        /// measured around the pipeline pass only.
        /// </summary>
        private void MeasuredLoops(Action pass, Action? between, Action<bool> bare)
        {
            for (int loop = 0; loop < options.Loops; loop++)
            {
                long allocated = GC.GetAllocatedBytesForCurrentThread();
                long c0 = Interop.LibC.ThreadCpuNanoseconds();
                long t0 = Stopwatch.GetTimestamp();
                pass();
                long t1 = Stopwatch.GetTimestamp();
                long c1 = Interop.LibC.ThreadCpuNanoseconds();
                AllocatedBytes += GC.GetAllocatedBytesForCurrentThread() - allocated;
                PipelineTicks += t1 - t0;
                PipelineCpuNs += c1 - c0;
                between?.Invoke();
                long c2 = Interop.LibC.ThreadCpuNanoseconds();
                long t2 = Stopwatch.GetTimestamp();
                bare(false);
                long t3 = Stopwatch.GetTimestamp();
                long c3 = Interop.LibC.ThreadCpuNanoseconds();
                bare(true);
                long t4 = Stopwatch.GetTimestamp();
                long c4 = Interop.LibC.ThreadCpuNanoseconds();
                SealTicks += t3 - t2;
                SealOpenTicks += t4 - t3;
                SealCpuNs += c3 - c2;
                SealOpenCpuNs += c4 - c3;
            }
        }

        /// <summary>The IPsec run: the same shape as <see cref="Run"/> (warm-up pass checked and recorded,
        /// measured loops interleaved with the bare AEAD), with ESP between the nodes and AES-GCM as
        /// the yardstick. No handshake: the SAs come from the keys, as in Cilium.</summary>
        private void RunIpsec(Barrier barrier)
        {
            using var pair = EspPair = new EspReplayPair(options.Mode, capture, options.Policy, options.Clock);
            _espSink = sink as IEspUnderlaySink;
            _work = GC.AllocateUninitializedArray<byte>(OverlayPipeline.Headroom + capture.MaxLength + Slack, pinned: true);
            _bare = GC.AllocateUninitializedArray<byte>(OverlayPipeline.Headroom + capture.MaxLength + Slack, pinned: true);
            PassIpsec(measure: false, sample: false);
            _espSink = null;
            var keyBytes = GC.AllocateArray<byte>(20, pinned: true);
            System.Security.Cryptography.RandomNumberGenerator.Fill(keyBytes);
            using var bareKey = new AesGcmKey(keyBytes, AesGcmKey.TagSize);
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(keyBytes);
            BareAesGcm(bareKey, open: true);
            SettleJit(() =>
            {
                PassIpsec(measure: false, sample: true);
                BareAesGcm(bareKey, open: false);
                BareAesGcm(bareKey, open: true);
            });
            ResetCounts(_espDrops);
            barrier.SignalAndWait();
            MeasuredLoops(() => PassIpsec(measure: true, sample: true), null, open => BareAesGcm(bareKey, open));
            if (espSaPath is not null) WriteEspSa(espSaPath, pair);
            _stages["outbound_total"] = (_outTicks, _sampled);
            _stages["inbound_total"] = (_inTicks, _sampled);
        }

        private static void WriteEspSa(string path, EspReplayPair pair)
        {
            using var writer = WireGuardKeyLog.CreatePrivateText(path);
            var keys = pair.ExportKeys();
            writer.Write(WiresharkEspSa.File(keys));
            foreach (var k in keys) System.Security.Cryptography.CryptographicOperations.ZeroMemory(k.KeyAndSalt);
        }

        private void PassIpsec(bool measure, bool sample)
        {
            var pair = EspPair!;
            int mask = sample ? options.SampleEvery - 1 : -1;
            long bytes = 0;
            const int at = OverlayPipeline.Headroom;
            for (int k = 0; k < indices.Length; k++)
            {
                int i = indices[k];
                var original = new ReadOnlySpan<byte>(capture.Data, capture.Offsets[i], capture.Lengths[i]);
                bytes += original.Length;
                bool fromA = capture.FromA[i], timed = sample && (k & mask) == 0;
                original.CopyTo(_work.AsSpan(at));
                long t0 = timed ? Stopwatch.GetTimestamp() : 0;
                EspStep sent = pair.Outbound(fromA, _work, at, original.Length);
                long t1 = timed ? Stopwatch.GetTimestamp() : 0;
                if (!sent.Ok)
                {
                    CountEspDrop(Direction.Egress, sent);
                }
                else
                {
                    var esp = _work.AsSpan(sent.Offset, sent.Length);
                    _espSink?.EspPacket(fromA, esp);
                    EspStep received = pair.Inbound(fromA, esp);
                    if (timed)
                    {
                        long t2 = Stopwatch.GetTimestamp();
                        _outTicks += t1 - t0;
                        _inTicks += t2 - t1;
                        _sampled++;
                    }
                    if (!received.Ok) CountEspDrop(Direction.Ingress, received);
                    else if (esp.Slice(received.Offset, received.Length).SequenceEqual(original)) RoundTripped++;
                    else Mismatched++;
                }
                if ((k & 1023) == 1023) Volatile.Write(ref Progress, Progress + 1024);
            }
            Volatile.Write(ref Progress, Progress + (indices.Length & 1023));
            if (measure)
            {
                MeasuredPackets += indices.Length;
                MeasuredBytes += bytes;
            }
        }

        private void CountEspDrop(Direction direction, in EspStep step)
        {
            if (step.Drop == OverlayDrop.Tunnel) _espDrops[(int)direction * (int)EspStatus.Count + (int)step.Esp]++;
            else _overlayDrops[(int)direction * 256 + (int)step.Drop]++;
        }

        /// <summary>The IPsec yardstick: AES-GCM alone over the plaintext lengths ESP encrypts (inner
        /// packet, plus VXLAN in overlay mode, plus the 2-byte trailer aligned to 4), with the ESN
        /// AAD, in place, on this thread.</summary>
        private void BareAesGcm(AesGcmKey key, bool open)
        {
            var work = _bare;
            int overhead = options.Mode == ReplayMode.Overlay ? VxlanFrame.Overhead : 0;
            Span<byte> iv = stackalloc byte[AesGcmKey.IvSize];
            Span<byte> aad = stackalloc byte[12];
            for (int k = 0; k < indices.Length; k++)
            {
                int plaintext = (capture.Lengths[indices[k]] + overhead + 2 + 3) & ~3;
                var span = work.AsSpan(0, plaintext + AesGcmKey.TagSize);
                _bareCounter++;
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(iv, _bareCounter);
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(aad[4..], _bareCounter);
                key.Seal(iv, span[..plaintext], aad, span[..plaintext], span[plaintext..]);
                if (open && !key.Open(iv, span[..plaintext], span[plaintext..], aad, span[..plaintext]))
                    throw new InvalidOperationException("bare AES-GCM round trip failed");
            }
        }

        private void Pass(bool measure, bool sample)
        {
            var pair = Pair!;
            int mask = sample ? options.SampleEvery - 1 : -1;
            var data = capture.Data;
            long bytes = 0;
            long now = 0;
            for (int k = 0; k < indices.Length; k++)
            {
                int i = indices[k];
                var original = new ReadOnlySpan<byte>(data, capture.Offsets[i], capture.Lengths[i]);
                bytes += original.Length;
                if (k % ClockBatch == 0)
                {
                    now = pair.EngineA.ReadClock(); // both engines (and pipelines) run on one clock
                }
                if (options.Mode == ReplayMode.Overlay)
                {
                    Overlay(pair, original, capture.FromA[i], sample && (k & mask) == 0, now);
                }
                else
                {
                    Plain(pair, original, capture.FromA[i], sample && (k & mask) == 0, now);
                }
                if (pair.HasPending) pair.Pump();
                if ((k & 1023) == 1023) Volatile.Write(ref Progress, Progress + 1024);
            }
            Volatile.Write(ref Progress, Progress + (indices.Length & 1023));
            if (measure)
            {
                MeasuredPackets += indices.Length;
                MeasuredBytes += bytes;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Overlay(ReplayPair pair, ReadOnlySpan<byte> original, bool fromA, bool timed, long now)
        {
            var work = _work;
            const int at = OverlayPipeline.Headroom;
            original.CopyTo(work.AsSpan(at));
            long t0 = timed ? Stopwatch.GetTimestamp() : 0;
            var sent = (fromA ? pair.PipelineA! : pair.PipelineB!).Outbound(work, at, original.Length, now);
            long t1 = timed ? Stopwatch.GetTimestamp() : 0;
            if (sent.Action != OverlayAction.Send)
            {
                CountNotSent(Direction.Egress, sent.Action, sent.Drop, sent.TunnelReason);
                return;
            }
            var datagram = work.AsSpan(sent.Offset);
            pair.Sink?.Datagram(fromA, datagram[..sent.Length]);
            var received = (fromA ? pair.PipelineB! : pair.PipelineA!).Inbound(fromA ? ReplayPair.UnderlayA : ReplayPair.UnderlayB, datagram, sent.Length, now);
            if (timed)
            {
                long t2 = Stopwatch.GetTimestamp();
                _outTicks += t1 - t0;
                _inTicks += t2 - t1;
                _sampled++;
            }
            if (received.Action == OverlayAction.Deliver)
            {
                if (datagram.Slice(received.Offset, received.Length).SequenceEqual(original)) RoundTripped++;
                else Mismatched++;
            }
            else
            {
                CountNotSent(Direction.Ingress, received.Action, received.Drop, received.TunnelReason);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Plain(ReplayPair pair, ReadOnlySpan<byte> original, bool fromA, bool timed, long now)
        {
            var work = _work;
            const int at = Messages.TransportHeaderSize;
            original.CopyTo(work.AsSpan(at));
            long t0 = timed ? Stopwatch.GetTimestamp() : 0;
            var sent = (fromA ? pair.EngineA : pair.EngineB).EncapsulateInPlace(work, original.Length, now);
            long t1 = timed ? Stopwatch.GetTimestamp() : 0;
            if (sent.Action != TunnelAction.SendToNetwork)
            {
                CountNotSent(Direction.Egress, sent.Action == TunnelAction.Drop ? OverlayAction.Drop : OverlayAction.None, OverlayDrop.Tunnel, sent.Reason);
                return;
            }
            var datagram = work.AsSpan(sent.Offset, sent.Length);
            pair.Sink?.Datagram(fromA, datagram);
            var received = (fromA ? pair.EngineB : pair.EngineA).Decapsulate(fromA ? ReplayPair.UnderlayA : ReplayPair.UnderlayB, datagram, now);
            if (timed)
            {
                long t2 = Stopwatch.GetTimestamp();
                _outTicks += t1 - t0;
                _inTicks += t2 - t1;
                _sampled++;
            }
            if (received.Action == TunnelAction.DeliverToTun)
            {
                if (datagram.Slice(received.Offset, received.Length).SequenceEqual(original)) RoundTripped++;
                else Mismatched++;
            }
            else
            {
                CountNotSent(Direction.Ingress, received.Action == TunnelAction.Drop ? OverlayAction.Drop : OverlayAction.None, OverlayDrop.Tunnel, received.Reason);
            }
        }

        private void CountNotSent(Direction direction, OverlayAction action, OverlayDrop drop, TunnelEvent tunnelReason)
        {
            if (action != OverlayAction.Drop)
            {
                NotSent++;
            }
            else if (drop == OverlayDrop.Tunnel)
            {
                _tunnelDrops[(int)direction * 256 + (int)tunnelReason]++;
            }
            else
            {
                _overlayDrops[(int)direction * 256 + (int)drop]++;
            }
        }

        /// <summary>
        /// The pipeline's Outbound is one call; to see where its time goes, the sampled packets are
        /// pushed once more through the same steps it performs, timed one by one: parse + conntrack/
        /// policy, VXLAN header write, WireGuard seal, and the receiver's Inbound (open, VXLAN checks,
        /// ingress policy). Only packets the egress policy allows are timed (the others stop at step one).
        /// </summary>
        private void Breakdown()
        {
            var pair = Pair!;
            var work = _work;
            const int at = OverlayPipeline.Headroom;
            // The pipeline keeps each node's own MAC precomputed; so does this pass.
            Span<byte> macA = stackalloc byte[6], macB = stackalloc byte[6];
            VxlanFrame.NodeMac(pair.PipelineA!.Options.TunnelAddress, macA);
            VxlanFrame.NodeMac(pair.PipelineB!.Options.TunnelAddress, macB);
            var peerOfA = pair.PipelineA!.Peers.First();
            var peerOfB = pair.PipelineB!.Peers.First();
            // One clock reading for the pass, as the pipeline gets one per batch.
            long now = pair.EngineA.ReadClock();
            for (int k = 0; k < indices.Length; k += options.SampleEvery)
            {
                int i = indices[k];
                bool fromA = capture.FromA[i];
                var sender = fromA ? pair.PipelineA! : pair.PipelineB!;
                var receiver = fromA ? pair.PipelineB! : pair.PipelineA!;
                var engine = fromA ? pair.EngineA : pair.EngineB;
                var enginePeer = fromA ? pair.PeerBOnA : pair.PeerAOnB;
                var peer = fromA ? peerOfA : peerOfB;
                var original = capture.Packet(i);
                original.CopyTo(work.AsSpan(at));
                long t0 = Stopwatch.GetTimestamp();
                if (FlowParser.ParseIp(work.AsSpan(at, original.Length), out var key) != ParseStatus.Ok) continue;
                var decision = sender.Policy.Process(key, now, PolicyChecks.Egress);
                long t1 = Stopwatch.GetTimestamp();
                if (!decision.Allowed) continue;
                VxlanFrame.Write(work.AsSpan(at - VxlanFrame.Overhead, VxlanFrame.Overhead), original.Length, sender.Options.TunnelAddress,
                    peer.TunnelAddress, sender.Options.VxlanPort, decision.SourceIdentity, VxlanFrame.SourcePort(key), peer.Mac, fromA ? macA : macB,
                    key.IpVersion == 4 ? (ushort)0x0800 : (ushort)0x86DD);
                long t2 = Stopwatch.GetTimestamp();
                // As the pipeline seals: for the peer it routed to, at the batch's clock reading.
                var sent = engine.BeginEncapsulateInPlace(enginePeer, work, VxlanFrame.Overhead + original.Length, now, out var ticket);
                bool sealedOk = ticket.IsPending && engine.CompleteEncapsulate(ticket, work);
                long t3 = Stopwatch.GetTimestamp();
                if (sent.Action != TunnelAction.SendToNetwork || !sealedOk) continue;
                receiver.Inbound(fromA ? ReplayPair.UnderlayA : ReplayPair.UnderlayB, work.AsSpan(sent.Offset), sent.Length, now);
                long t4 = Stopwatch.GetTimestamp();
                // What an empty stage measures: the cost of reading the timestamp itself, which every
                // stage figure above includes once.
                long t5 = Stopwatch.GetTimestamp();
                _parse += t1 - t0;
                _vxlan += t2 - t1;
                _seal += t3 - t2;
                _open += t4 - t3;
                _timestamp += t5 - t4;
                _breakdownCount++;
                if (pair.HasPending) pair.Pump();
            }
        }

        /// <summary>
        /// The yardstick: ChaCha20-Poly1305 alone over exactly the plaintext lengths the pipeline seals
        /// (inner packet, plus the 50-byte VXLAN headers in overlay mode, padded as the sending engine
        /// pads: to 16, but never beyond its MTU, so a 1,470-byte VXLAN datagram stays 1,470 bytes),
        /// as many packets as the measured loops, in place, on this thread. The exact length matters:
        /// OpenSSL seals and opens a message that is not a multiple of 64 bytes markedly slower (it
        /// finishes the last block on its own), so 1,472 bytes cost less than 1,470.
        /// </summary>
        private void BareAead(ChaCha20Poly1305Key key, bool open)
        {
            var work = _bare;
            int overhead = options.Mode == ReplayMode.Overlay ? VxlanFrame.Overhead : 0;
            var engine = Pair!.EngineA; // both engines pad alike (same options)
            for (int k = 0; k < indices.Length; k++)
            {
                int plaintext = engine.PaddedLength(capture.Lengths[indices[k]] + overhead);
                var span = work.AsSpan(0, plaintext + ChaCha20Poly1305Key.TagSize);
                key.Seal(_bareCounter, span[..plaintext], default, span);
                if (open && !key.Open(_bareCounter, span, default, span[..plaintext]))
                    throw new InvalidOperationException("bare AEAD round trip failed");
                _bareCounter++;
            }
        }
    }
}
