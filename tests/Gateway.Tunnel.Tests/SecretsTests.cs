using System.Buffers;
using System.Text.RegularExpressions;
using Gateway.Datapath;

namespace Gateway.Tunnel.Tests;

/// <summary>Issue 14 item 6: replay protection across peer removal, staged plaintext never
/// left in the shared pool, and constant-time comparisons of secrets.</summary>
public class SecretsTests
{
    [Fact]
    public void Initiation_replayed_after_the_peer_was_removed_and_added_again_is_refused()
    {
        using var p = new EnginePair();
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var init = p.A.Output.Drain().Single().Data;
        Assert.Equal(TunnelEvent.InitiationProcessed, p.Deliver(p.B, p.A.Endpoint, init).Reason);
        p.B.Output.Drain();

        // The operator removes the peer and adds it back (wg set ... remove; wg set ... peer ...).
        Assert.True(p.B.Engine.RemovePeer(p.A.Key));
        var again = p.B.Engine.GetOrAddPeer(p.A.Key);
        p.B.Engine.AddAllowedIp(again, IpPrefix.Parse("10.0.0.1/32"));
        p.Clock.Advance(TimeSpan.FromSeconds(1));

        // An attacker replays the captured initiation: the timestamp is not newer.
        Assert.Equal(TunnelEvent.StaleOrReplayedInitiation, p.Deliver(p.B, p.A.Endpoint, init).Reason);
        Assert.Empty(p.B.Output.Drain());

        // A fresh initiation from the real peer still works (after A's retry timeout).
        p.Clock.Advance(TimeSpan.FromSeconds(6));
        p.A.Output.Drain();
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var fresh = p.A.Output.Drain().Single().Data;
        Assert.Equal(TunnelEvent.InitiationProcessed, p.Deliver(p.B, p.A.Endpoint, fresh).Reason);
    }

    [Fact]
    public void Timestamp_store_keeps_the_latest_and_stays_bounded()
    {
        var store = new InitiationTimestamps();
        var key = new PublicKey(Enumerable.Repeat((byte)7, 32).ToArray());
        byte[] early = new byte[12], late = new byte[12];
        early[7] = 1;
        late[7] = 2;
        store.Remember(key, late);
        store.Remember(key, early);
        byte[] restored = new byte[12];
        store.Restore(key, restored);
        Assert.Equal(late, restored);
        // A never-used handshake (all zero) is not remembered.
        store.Remember(new PublicKey(new byte[32]), new byte[12]);
        Assert.Equal(1, store.Count);

        for (int i = 0; i < InitiationTimestamps.Capacity + 10; i++)
        {
            byte[] k = new byte[32];
            BitConverter.TryWriteBytes(k, i + 1);
            store.Remember(new PublicKey(k), late);
        }
        Assert.Equal(InitiationTimestamps.Capacity, store.Count);
    }

    [Fact]
    public void Staged_buffers_go_back_to_the_pool_cleared()
    {
        var queue = new StagedQueue();
        byte[] plaintext = Enumerable.Repeat((byte)0xAB, 1400).ToArray();
        queue.Enqueue(plaintext);
        var (buffer, length) = queue.Dequeue();
        Assert.Equal(1400, length);
        Assert.Equal(plaintext, buffer.AsSpan(0, length).ToArray());
        StagedQueue.Return(buffer);
        Assert.True(buffer.AsSpan().IndexOfAnyExcept((byte)0) < 0, "a returned staged buffer still holds plaintext");
    }

    [Fact]
    public void Dropped_and_flushed_staged_packets_leave_no_plaintext_in_the_pool()
    {
        // DropOldest and Clear give buffers back through Return; rent them again and look.
        var queue = new StagedQueue();
        for (int i = 0; i < 8; i++)
        {
            queue.Enqueue(Enumerable.Repeat((byte)0xCD, 1400).ToArray());
        }
        queue.DropOldest();
        queue.Clear();
        // The pool is shared with tests running in parallel, whose buffers may hold any byte:
        // look for a run of the staged plaintext, which no other test writes.
        byte[] run = Enumerable.Repeat((byte)0xCD, 64).ToArray();
        for (int i = 0; i < 16; i++)
        {
            byte[] rented = ArrayPool<byte>.Shared.Rent(1400);
            Assert.True(rented.AsSpan().IndexOf(run) < 0, "a pooled buffer still holds staged plaintext");
        }
    }

    [Fact]
    public void Secrets_are_compared_in_constant_time_everywhere()
    {
        // SequenceEqual returns at the first differing byte; on keys, MACs and cookies that leaks
        // how much of a guess was right. CryptographicOperations.FixedTimeEquals does not.
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "Gateway.sln")))
        {
            dir = Path.GetDirectoryName(dir);
        }
        Assert.NotNull(dir);
        // (String literals are UAPI key names, and Ethernet MAC addresses are not secrets.)
        var secretish = new Regex(@"(key|mac1|mac2|cookie|psk|secret|private|derived|tag)\w*\s*\)?\s*\.SequenceEqual\((?!"")|SequenceEqual\(\s*\w*(key|mac1|mac2|cookie|psk|secret|private|tag)", RegexOptions.IgnoreCase);
        var offenders = Directory.EnumerateFiles(Path.Combine(dir, "src"), "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .SelectMany(f => File.ReadLines(f).Select((line, i) => (f, i, line)))
            .Where(x => secretish.IsMatch(x.line) && !x.f.EndsWith("CryptoSelfTest.cs", StringComparison.Ordinal))
            .Select(x => $"{Path.GetRelativePath(dir, x.f)}:{x.i + 1}: {x.line.Trim()}")
            .ToList();
        Assert.True(offenders.Count == 0, "secrets compared with SequenceEqual:\n" + string.Join("\n", offenders));
    }
}
