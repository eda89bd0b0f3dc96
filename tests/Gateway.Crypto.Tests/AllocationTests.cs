namespace Gateway.Crypto.Tests;

/// <summary>
/// Hot-path calls allocate nothing once warmed up (GC.GetAllocatedBytesForCurrentThread is
/// exact per thread). The one-shot AEADs and X25519 import keys into NSec per call and are
/// deliberately not listed: they run per handshake, not per packet.
/// </summary>
public class AllocationTests
{
    private const int Iterations = 1000;

    private static long Measure(Action action)
    {
        for (int i = 0; i < 200; i++)
        {
            action();
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Iterations; i++)
        {
            action();
        }
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    private static readonly byte[] Data = Hex.Sequence(8192);
    private static readonly byte[] Key32 = Hex.Sequence(32);
    private static readonly byte[] Out32 = new byte[32];
    private static readonly byte[] Out32b = new byte[32];
    private static readonly byte[] Out32c = new byte[32];

    [Fact]
    public void Blake2sHashAllocatesNothing()
    {
        Assert.Equal(0, Measure(() => Blake2s.Hash(Data.AsSpan(0, 1000), Out32)));
        Assert.Equal(0, Measure(() => Blake2s.Hash(Key32, Data, Out32.AsSpan(0, 16))));
    }

    [Fact]
    public void Blake2sHasherAllocatesNothing()
    {
        Assert.Equal(0, Measure(() =>
        {
            var h = new Blake2sHasher(32, Key32);
            h.Update(Data.AsSpan(0, 100));
            h.Update(Data.AsSpan(100, 300));
            h.Finish(Out32);
        }));
    }

    [Fact]
    public void HmacAndKdfAllocateNothing()
    {
        Assert.Equal(0, Measure(() => WireGuardKdf.Hmac(Key32, Data.AsSpan(0, 148), Out32)));
        Assert.Equal(0, Measure(() => WireGuardKdf.Kdf3(Key32, Data.AsSpan(0, 32), Out32, Out32b, Out32c)));
    }

    [Fact]
    public void SessionSealAndOpenAllocateNothing()
    {
        using var key = new ChaCha20Poly1305Key(Key32);
        var buffer = new byte[1420 + 16];
        ulong counter = 0;
        Assert.Equal(0, Measure(() => key.Seal(counter++, buffer.AsSpan(0, 1420), default, buffer)));

        var sealedBytes = new byte[1420 + 16];
        key.Seal(99, Data.AsSpan(0, 1420), Key32, sealedBytes);
        var plain = new byte[1420];
        Assert.Equal(0, Measure(() =>
        {
            if (!key.Open(99, sealedBytes, Key32, plain))
            {
                throw new InvalidOperationException("open failed");
            }
        }));
    }

    [Fact]
    public void Tai64NGeneratorAllocatesNothing()
    {
        var gen = new Tai64NGenerator(TimeProvider.System);
        var stamp = new byte[12];
        Assert.Equal(0, Measure(() => gen.Next(stamp)));
    }
}
