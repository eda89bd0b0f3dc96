using System.Collections.Concurrent;

namespace Gateway.Crypto.Tests;

/// <summary>The datapath encrypts in parallel with one session key; handshakes may stamp concurrently.</summary>
public class ConcurrencyTests
{
    [Fact]
    public void OneSessionKeySealsCorrectlyFromSeveralThreads()
    {
        byte[] keyBytes = Hex.Sequence(32);
        using var key = new ChaCha20Poly1305Key(keyBytes);
        byte[] plaintext = Hex.Sequence(1420);

        var expected = new byte[64][];
        for (int i = 0; i < expected.Length; i++)
        {
            expected[i] = new byte[1420 + 16];
            ChaCha20Poly1305.Seal(keyBytes, (ulong)i, plaintext, default, expected[i]);
        }

        var mismatches = new ConcurrentBag<int>();
        Parallel.For(0, 4, new ParallelOptions { MaxDegreeOfParallelism = 4 }, _ =>
        {
            var buffer = new byte[1420 + 16];
            for (int round = 0; round < 50; round++)
            {
                for (int i = 0; i < expected.Length; i++)
                {
                    key.Seal((ulong)i, plaintext, default, buffer);
                    if (!buffer.AsSpan().SequenceEqual(expected[i]))
                    {
                        mismatches.Add(i);
                    }
                }
            }
        });
        Assert.Empty(mismatches);
    }

    [Fact]
    public void GeneratorStampsAreUniqueAcrossThreads()
    {
        var gen = new Tai64NGenerator(new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_700_000_000)));
        var stamps = new ConcurrentBag<string>();
        Parallel.For(0, 4, new ParallelOptions { MaxDegreeOfParallelism = 4 }, _ =>
        {
            var stamp = new byte[12];
            for (int i = 0; i < 2000; i++)
            {
                gen.Next(stamp);
                stamps.Add(Hex.Of(stamp));
            }
        });
        Assert.Equal(8000, stamps.Distinct().Count());
    }
}
