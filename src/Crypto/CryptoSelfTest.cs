using System.Text;

namespace Gateway.Crypto;

/// <summary>
/// Known-answer checks of every primitive against published vectors. Shared by the unit
/// tests and `gateway demo`, so the vectors live in exactly one place.
/// </summary>
internal static class CryptoSelfTest
{
    internal readonly record struct Result(string Name, bool Passed);

    // Vectors, with their sources.

    /// <summary>RFC 7693 Appendix A: BLAKE2s-256("abc").</summary>
    internal const string Blake2sAbc = "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982";

    /// <summary>RFC 7693 Appendix E: grand hash of the BLAKE2s self-test.</summary>
    internal const string Blake2sSelfTestGrandHash = "6a411f08ce25adcdfb02aba641451cec53c598b24f4fc787fbdc88797f4c1dfe";

    /// <summary>RFC 8439 section 2.8.2.</summary>
    internal static class Rfc8439
    {
        internal const string Key = "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f";
        internal const string Nonce = "070000004041424344454647";
        internal const string Aad = "50515253c0c1c2c3c4c5c6c7";
        internal const string Plaintext = "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        internal const string Ciphertext =
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6" +
            "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36" +
            "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc" +
            "3ff4def08e4b7a9de576d26586cec64b6116";
        internal const string Tag = "1ae10b594f09e26a7e902ecbd0600691";
    }

    /// <summary>draft-irtf-cfrg-xchacha-03 appendix A.3.1 (same key, AAD and plaintext as RFC 8439 2.8.2).</summary>
    internal static class XChaCha
    {
        internal const string Nonce = "404142434445464748494a4b4c4d4e4f5051525354555657";
        internal const string Ciphertext =
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb" +
            "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452" +
            "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9" +
            "21f9664c97637da9768812f615c68b13b52e";
        internal const string Tag = "c0875924c1c7987947deafd8780acf49";
    }

    /// <summary>RFC 7748 section 6.1 Diffie-Hellman.</summary>
    internal static class Rfc7748
    {
        internal const string AlicePrivate = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
        internal const string AlicePublic = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
        internal const string BobPrivate = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
        internal const string BobPublic = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
        internal const string Shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    }

    /// <summary>wireguard-go device/kdf_test.go, first case (its t0/t1/t2 are the whitepaper's T1/T2/T3).</summary>
    internal static class WireGuardGoKdf
    {
        internal const string Key = "746573742d6b6579";
        internal const string Input = "746573742d696e707574";
        internal const string T1 = "6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633";
        internal const string T2 = "df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a";
        internal const string T3 = "fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24";
    }

    internal static IReadOnlyList<Result> Run() =>
    [
        new("BLAKE2s-256(\"abc\") (RFC 7693 App. A)", CheckBlake2sAbc()),
        new("BLAKE2s self-test grand hash (RFC 7693 App. E)", CheckBlake2sSelfTest()),
        new("HKDF-BLAKE2s KDF3 (wireguard-go kdf_test.go)", CheckKdf()),
        new("ChaCha20-Poly1305 seal/open (RFC 8439 2.8.2)", CheckAead()),
        new($"ChaCha20-Poly1305 transport key ({ChaCha20Poly1305Key.Backend}) agrees with the RFC 8439 path", CheckTransportKey()),
        new("XChaCha20-Poly1305 seal/open (draft-irtf-cfrg-xchacha A.3.1)", CheckXChaCha()),
        new("X25519 Diffie-Hellman (RFC 7748 6.1)", CheckX25519()),
    ];

    internal static bool CheckBlake2sAbc()
    {
        Span<byte> md = stackalloc byte[32];
        Blake2s.Hash("abc"u8, md);
        return md.SequenceEqual(Convert.FromHexString(Blake2sAbc));
    }

    /// <summary>RFC 7693 Appendix E, driven through both the one-shot and incremental APIs.</summary>
    internal static bool CheckBlake2sSelfTest() => ComputeBlake2sSelfTestGrandHash().AsSpan().SequenceEqual(Convert.FromHexString(Blake2sSelfTestGrandHash));

    internal static byte[] ComputeBlake2sSelfTestGrandHash()
    {
        ReadOnlySpan<int> mdLengths = [16, 20, 28, 32];
        ReadOnlySpan<int> inLengths = [0, 3, 64, 65, 255, 1024];
        byte[] input = new byte[1024];
        byte[] key = new byte[32];
        Span<byte> md = stackalloc byte[32];
        var grand = new Blake2sHasher(32);
        foreach (int outLen in mdLengths)
        {
            foreach (int inLen in inLengths)
            {
                SelfTestSequence(input.AsSpan(0, inLen), (uint)inLen);
                Blake2s.Hash(input.AsSpan(0, inLen), md.Slice(0, outLen));
                grand.Update(md.Slice(0, outLen));

                SelfTestSequence(key.AsSpan(0, outLen), (uint)outLen);
                Blake2s.Hash(key.AsSpan(0, outLen), input.AsSpan(0, inLen), md.Slice(0, outLen));
                grand.Update(md.Slice(0, outLen));
            }
        }
        byte[] result = new byte[32];
        grand.Finish(result);
        return result;
    }

    /// <summary>RFC 7693 Appendix E deterministic (Fibonacci-like) byte sequence.</summary>
    internal static void SelfTestSequence(Span<byte> output, uint seed)
    {
        uint a = unchecked(0xDEAD4BAD * seed);
        uint b = 1;
        for (int i = 0; i < output.Length; i++)
        {
            uint t = unchecked(a + b);
            a = b;
            b = t;
            output[i] = (byte)(t >> 24);
        }
    }

    internal static bool CheckKdf()
    {
        Span<byte> t1 = stackalloc byte[32], t2 = stackalloc byte[32], t3 = stackalloc byte[32];
        WireGuardKdf.Kdf3(Convert.FromHexString(WireGuardGoKdf.Key), Convert.FromHexString(WireGuardGoKdf.Input), t1, t2, t3);
        return t1.SequenceEqual(Convert.FromHexString(WireGuardGoKdf.T1))
            && t2.SequenceEqual(Convert.FromHexString(WireGuardGoKdf.T2))
            && t3.SequenceEqual(Convert.FromHexString(WireGuardGoKdf.T3));
    }

    /// <summary>RFC 8439 section 2.8.2 as bytes; <see cref="AeadVector.Expected"/> is ciphertext and tag.</summary>
    internal readonly record struct AeadVector(byte[] Key, byte[] Nonce, byte[] Aad, byte[] Plaintext, byte[] Expected);

    internal static AeadVector Rfc8439Vector() => new(
        Convert.FromHexString(Rfc8439.Key),
        Convert.FromHexString(Rfc8439.Nonce),
        Convert.FromHexString(Rfc8439.Aad),
        Encoding.ASCII.GetBytes(Rfc8439.Plaintext),
        Convert.FromHexString(Rfc8439.Ciphertext + Rfc8439.Tag));

    internal static bool CheckAead()
    {
        var v = Rfc8439Vector();
        byte[] sealedBytes = new byte[v.Plaintext.Length + 16];
        ChaCha20Poly1305.SealWithNonce(v.Key, v.Nonce, v.Plaintext, v.Aad, sealedBytes);
        byte[] opened = new byte[v.Plaintext.Length];
        bool ok = ChaCha20Poly1305.OpenWithNonce(v.Key, v.Nonce, v.Expected, v.Aad, opened);
        return sealedBytes.AsSpan().SequenceEqual(v.Expected) && ok && opened.AsSpan().SequenceEqual(v.Plaintext);
    }

    /// <summary>The session key type (OpenSSL from 512 bytes when present, libsodium below) seals
    /// and opens a keepalive-sized, an ACK-sized and a full packet exactly as the one-shot path that
    /// <see cref="CheckAead"/> checked against RFC 8439.</summary>
    internal static bool CheckTransportKey()
    {
        var v = Rfc8439Vector();
        using var key = new ChaCha20Poly1305Key(v.Key);
        foreach (int length in (ReadOnlySpan<int>)[0, 52, 1420])
        {
            byte[] plaintext = new byte[length];
            SelfTestSequence(plaintext, (uint)length);
            byte[] expected = new byte[length + 16], actual = new byte[length + 16], opened = new byte[length];
            ChaCha20Poly1305.Seal(v.Key, 7, plaintext, default, expected);
            key.Seal(7, plaintext, default, actual);
            if (!actual.AsSpan().SequenceEqual(expected) || !key.Open(7, expected, default, opened) || !opened.AsSpan().SequenceEqual(plaintext)) return false;
        }
        return true;
    }

    internal static bool CheckXChaCha()
    {
        byte[] key = Convert.FromHexString(Rfc8439.Key);
        byte[] nonce = Convert.FromHexString(XChaCha.Nonce);
        byte[] aad = Convert.FromHexString(Rfc8439.Aad);
        byte[] plaintext = Encoding.ASCII.GetBytes(Rfc8439.Plaintext);
        byte[] expected = Convert.FromHexString(XChaCha.Ciphertext + XChaCha.Tag);
        byte[] sealedBytes = new byte[plaintext.Length + 16];
        XChaCha20Poly1305.Seal(key, nonce, plaintext, aad, sealedBytes);
        byte[] opened = new byte[plaintext.Length];
        bool ok = XChaCha20Poly1305.Open(key, nonce, expected, aad, opened);
        return sealedBytes.AsSpan().SequenceEqual(expected) && ok && opened.AsSpan().SequenceEqual(plaintext);
    }

    internal static bool CheckX25519()
    {
        byte[] alicePriv = Convert.FromHexString(Rfc7748.AlicePrivate);
        byte[] bobPriv = Convert.FromHexString(Rfc7748.BobPrivate);
        Span<byte> alicePub = stackalloc byte[32], bobPub = stackalloc byte[32];
        Span<byte> s1 = stackalloc byte[32], s2 = stackalloc byte[32];
        X25519.DerivePublicKey(alicePriv, alicePub);
        X25519.DerivePublicKey(bobPriv, bobPub);
        bool ok1 = X25519.TryAgree(alicePriv, bobPub, s1);
        bool ok2 = X25519.TryAgree(bobPriv, alicePub, s2);
        byte[] shared = Convert.FromHexString(Rfc7748.Shared);
        return alicePub.SequenceEqual(Convert.FromHexString(Rfc7748.AlicePublic))
            && bobPub.SequenceEqual(Convert.FromHexString(Rfc7748.BobPublic))
            && ok1 && ok2 && s1.SequenceEqual(shared) && s2.SequenceEqual(shared);
    }
}
