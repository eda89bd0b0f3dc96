using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Gateway.Crypto.Tests;

/// <summary>
/// The transport key's OpenSSL implementation against libsodium (NSec's one-shot path, which
/// the handshake uses): the same bytes for any key, counter, length and associated data, in
/// place and not, and the same refusals.
/// </summary>
public class OpenSslAeadTests
{
    public sealed record AeadCase(byte[] Key, ulong Counter, byte[] Plaintext, byte[] Aad, int Flip)
    {
        public override string ToString() => $"counter={Counter} plaintext={Plaintext.Length}B aad={Aad.Length}B flip={Flip}";
    }

    private static readonly Gen<byte> Bytes = ArbMap.Default.GeneratorFor<byte>();

    /// <summary>Lengths across ChaCha20's 64-byte blocks and Poly1305's 16-byte blocks, up to a jumbo-ish packet.</summary>
    private static Gen<AeadCase> Cases =>
        from key in Gen.ArrayOf(Bytes, 32)
        from counter in ArbMap.Default.GeneratorFor<ulong>()
        from length in Gen.OneOf(Gen.Choose(0, 80), Gen.Choose(0, 1500), Gen.Choose(1400, 9000))
        from plaintext in Gen.ArrayOf(Bytes, length)
        from aadLength in Gen.OneOf(Gen.Constant(0), Gen.Choose(1, 40))
        from aad in Gen.ArrayOf(Bytes, aadLength)
        from flip in Gen.Choose(0, int.MaxValue)
        select new AeadCase(key, counter, plaintext, aad, flip);

    [Fact]
    public void OpenSslIsTheTransportImplementationWhereLibcryptoIsPresent()
    {
        // .NET needs libssl/libcrypto on Linux, so the machines this runs on have it; the probe
        // (RFC 8439's vector both ways) must have accepted it unless libsodium was asked for.
        bool forcedSodium = string.Equals(Environment.GetEnvironmentVariable("GATEWAY_AEAD"), "libsodium", StringComparison.OrdinalIgnoreCase);
        Assert.Equal(forcedSodium ? "libsodium" : "OpenSSL and libsodium", ChaCha20Poly1305Key.Backend);
    }

    [Property(MaxTest = 300)]
    public Property SealAndOpenMatchLibsodium() => Prop.ForAll(Cases.ToArbitrary(), c =>
    {
        int n = c.Plaintext.Length;
        var expected = new byte[n + 16];
        ChaCha20Poly1305.Seal(c.Key, c.Counter, c.Plaintext, c.Aad, expected);

        using var key = new ChaCha20Poly1305Key(c.Key);
        var separate = new byte[n + 16];
        key.Seal(c.Counter, c.Plaintext, c.Aad, separate);
        var inPlace = new byte[n + 16];
        c.Plaintext.CopyTo(inPlace, 0);
        key.Seal(c.Counter, inPlace.AsSpan(0, n), c.Aad, inPlace);

        var opened = new byte[n];
        bool openedOk = key.Open(c.Counter, expected, c.Aad, opened);
        var openedInPlace = (byte[])expected.Clone();
        bool inPlaceOk = key.Open(c.Counter, openedInPlace, c.Aad, openedInPlace.AsSpan(0, n));

        // One flipped bit anywhere (ciphertext or tag) fails, and leaves no plaintext behind.
        var tampered = (byte[])expected.Clone();
        tampered[c.Flip % tampered.Length] ^= (byte)(1 << (c.Flip % 8));
        var refused = Enumerable.Repeat((byte)0xAA, n).ToArray();
        bool tamperedOk = key.Open(c.Counter, tampered, c.Aad, refused);
        bool wrongCounter = key.Open(c.Counter + 1, expected, c.Aad, new byte[n]);

        // The OpenSSL class itself at every length, not only above the key's threshold.
        bool direct = true;
        if (OpenSslChaCha20Poly1305.IsSupported)
        {
            using var openssl = new OpenSslChaCha20Poly1305(c.Key);
            var nonce = new byte[12];
            ChaCha20Poly1305Key.WriteNonce(c.Counter, nonce);
            var viaOpenSsl = new byte[n + 16];
            openssl.Seal(nonce, c.Plaintext, c.Aad, viaOpenSsl);
            var back = new byte[n];
            direct = viaOpenSsl.AsSpan().SequenceEqual(expected) && openssl.Open(nonce, expected, c.Aad, back) && back.AsSpan().SequenceEqual(c.Plaintext)
                     && !openssl.Open(nonce, tampered, c.Aad, new byte[n]);
        }

        return (direct && separate.AsSpan().SequenceEqual(expected) && inPlace.AsSpan().SequenceEqual(expected)
                && openedOk && opened.AsSpan().SequenceEqual(c.Plaintext)
                && inPlaceOk && openedInPlace.AsSpan(0, n).SequenceEqual(c.Plaintext)
                && !tamperedOk && refused.All(b => b == 0) && !wrongCounter)
            .Label($"direct={direct} separate={separate.AsSpan().SequenceEqual(expected)} inPlace={inPlace.AsSpan().SequenceEqual(expected)} open={openedOk} openInPlace={inPlaceOk} tampered={tamperedOk} wrongCounter={wrongCounter}");
    });

    [Fact]
    public void AKeyKeepsWorkingAfterRefusingForgeries()
    {
        byte[] keyBytes = Hex.Sequence(32);
        using var key = new ChaCha20Poly1305Key(keyBytes);
        byte[] plaintext = Hex.Sequence(1420);
        var good = new byte[1436];
        key.Seal(7, plaintext, default, good);
        var forged = (byte[])good.Clone();
        forged[100] ^= 0x40;
        for (int i = 0; i < 5; i++)
        {
            Assert.False(key.Open(7, forged, default, new byte[1420]));
        }
        var opened = new byte[1420];
        Assert.True(key.Open(7, good, default, opened));
        Assert.Equal(plaintext, opened);
    }

    [Fact]
    public void SealAndOpenOfADisposedKeyThrow()
    {
        var key = new ChaCha20Poly1305Key(Hex.Sequence(32));
        var buffer = new byte[64 + 16];
        key.Seal(1, buffer.AsSpan(0, 64), default, buffer);
        key.Dispose();
        key.Dispose();
        Assert.Throws<ObjectDisposedException>(() => key.Seal(2, buffer.AsSpan(0, 64), default, buffer));
        Assert.Throws<ObjectDisposedException>(() => key.Open(1, buffer, default, buffer.AsSpan(0, 64)));
    }

    [Fact]
    public void ManyThreadsOpenWithOneKeyAtOnce()
    {
        // More threads than the key's context slots: extra callers get contexts of their own.
        byte[] keyBytes = Hex.Sequence(32);
        using var key = new ChaCha20Poly1305Key(keyBytes);
        byte[] plaintext = Hex.Sequence(1420);
        var sealedMessages = Enumerable.Range(0, 32).Select(i =>
        {
            var m = new byte[1436];
            ChaCha20Poly1305.Seal(keyBytes, (ulong)i, plaintext, default, m);
            return m;
        }).ToArray();
        int failures = 0;
        Parallel.For(0, 24, new ParallelOptions { MaxDegreeOfParallelism = 24 }, _ =>
        {
            var opened = new byte[1420];
            for (int round = 0; round < 20; round++)
            {
                for (int i = 0; i < sealedMessages.Length; i++)
                {
                    if (!key.Open((ulong)i, sealedMessages[i], default, opened) || !opened.AsSpan().SequenceEqual(plaintext))
                    {
                        Interlocked.Increment(ref failures);
                    }
                }
            }
        });
        Assert.Equal(0, failures);
    }
}
