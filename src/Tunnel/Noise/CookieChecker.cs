using Gateway.Datapath;
using System.Buffers.Binary;
using System.Security.Cryptography;
using Gateway.Crypto;
using XChaCha20Poly1305 = Gateway.Crypto.XChaCha20Poly1305;

namespace Gateway.Tunnel.Noise;

/// <summary>
/// Responder side of the cookie mechanism (whitepaper 5.4.4 and 5.4.7): verifies mac1 (keyed by
/// our public key) on every handshake message, verifies mac2 when under load, and builds
/// cookie replies. The cookie is MAC(secret, source ip || source port); the secret changes every
/// <see cref="WireGuardConstants.CookieRefreshTime"/>.
/// </summary>
internal sealed class CookieChecker
{
    private readonly byte[] _mac1Key = new byte[32];
    private readonly byte[] _cookieKey = new byte[32];
    private readonly byte[] _secret = new byte[32];
    private long _secretSetAt;
    private bool _secretValid;
    private bool _hasKey;

    public void SetLocalPublicKey(ReadOnlySpan<byte> publicKey)
    {
        if (publicKey.IsEmpty)
        {
            CryptographicOperations.ZeroMemory(_mac1Key);
            CryptographicOperations.ZeroMemory(_cookieKey);
            _hasKey = false;
            return;
        }
        NoiseConstants.LabelHash(NoiseConstants.LabelMac1, publicKey, _mac1Key);
        NoiseConstants.LabelHash(NoiseConstants.LabelCookie, publicKey, _cookieKey);
        _hasKey = true;
    }

    /// <summary>mac1 covers everything before it: message[..^32].</summary>
    public bool CheckMac1(ReadOnlySpan<byte> message)
    {
        if (!_hasKey) return false;
        Span<byte> mac = stackalloc byte[16];
        int macOffset = message.Length - 32;
        NoiseConstants.Mac(_mac1Key, message[..macOffset], mac);
        return CryptographicOperations.FixedTimeEquals(mac, message.Slice(macOffset, 16));
    }

    /// <summary>mac2 covers message[..^16] and is keyed by the cookie we would hand this source.</summary>
    public bool CheckMac2(ReadOnlySpan<byte> message, in IpEndpoint source, long now)
    {
        if (!_secretValid || now - _secretSetAt > WireGuardConstants.CookieRefreshTime) return false;
        Span<byte> cookie = stackalloc byte[16];
        MakeCookie(source, cookie);
        Span<byte> mac = stackalloc byte[16];
        int macOffset = message.Length - 16;
        NoiseConstants.Mac(cookie, message[..macOffset], mac);
        bool ok = CryptographicOperations.FixedTimeEquals(mac, message.Slice(macOffset, 16));
        CryptographicOperations.ZeroMemory(cookie);
        return ok;
    }

    /// <summary>Builds the 64-byte cookie reply to <paramref name="message"/> (an initiation or response).</summary>
    public void CreateReply(ReadOnlySpan<byte> message, uint receiverIndex, in IpEndpoint source, long now, IRandomSource random, Span<byte> reply)
    {
        if (!_secretValid || now - _secretSetAt > WireGuardConstants.CookieRefreshTime)
        {
            random.Fill(_secret);
            _secretSetAt = now;
            _secretValid = true;
        }
        Span<byte> cookie = stackalloc byte[16];
        MakeCookie(source, cookie);
        reply[..Messages.CookieReplySize].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(reply, (uint)MessageType.CookieReply);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[Messages.CookieReceiver..], receiverIndex);
        var nonce = reply.Slice(Messages.CookieNonce, XChaCha20Poly1305.NonceSize);
        random.Fill(nonce);
        // The AD is the mac1 of the message being answered, binding the reply to it.
        var mac1 = message.Slice(message.Length - 32, 16);
        XChaCha20Poly1305.Seal(_cookieKey, nonce, cookie, mac1, reply.Slice(Messages.CookieEncrypted, 32));
        CryptographicOperations.ZeroMemory(cookie);
    }

    private void MakeCookie(in IpEndpoint source, Span<byte> cookie16)
    {
        Span<byte> input = stackalloc byte[18];
        int n = source.WriteCookieInput(input);
        NoiseConstants.Mac(_secret, input[..n], cookie16);
    }
}

/// <summary>
/// Initiator side (per peer): adds mac1 and, while a fresh cookie is held, mac2 to our handshake
/// messages; consumes cookie replies addressed to the last message we sent.
/// </summary>
internal sealed class CookieGenerator
{
    private readonly byte[] _mac1Key = new byte[32];
    private readonly byte[] _cookieKey = new byte[32];
    private readonly byte[] _cookie = new byte[16];
    private readonly byte[] _lastMac1 = new byte[16];
    private bool _hasLastMac1;
    private bool _hasCookie;
    private long _cookieSetAt;

    public CookieGenerator(ReadOnlySpan<byte> peerPublicKey)
    {
        NoiseConstants.LabelHash(NoiseConstants.LabelMac1, peerPublicKey, _mac1Key);
        NoiseConstants.LabelHash(NoiseConstants.LabelCookie, peerPublicKey, _cookieKey);
    }

    public bool HasFreshCookie(long now) => _hasCookie && now - _cookieSetAt <= WireGuardConstants.CookieRefreshTime;

    public void AddMacs(Span<byte> message, long now)
    {
        int mac1Offset = message.Length - 32;
        var mac1 = message.Slice(mac1Offset, 16);
        NoiseConstants.Mac(_mac1Key, message[..mac1Offset], mac1);
        mac1.CopyTo(_lastMac1);
        _hasLastMac1 = true;
        var mac2 = message.Slice(message.Length - 16, 16);
        if (HasFreshCookie(now))
            NoiseConstants.Mac(_cookie, message[..(message.Length - 16)], mac2);
        else
            mac2.Clear();
    }

    public bool ConsumeReply(ReadOnlySpan<byte> reply, long now)
    {
        if (!_hasLastMac1) return false;
        Span<byte> cookie = stackalloc byte[16];
        if (!XChaCha20Poly1305.Open(_cookieKey, reply.Slice(Messages.CookieNonce, XChaCha20Poly1305.NonceSize),
                reply.Slice(Messages.CookieEncrypted, 32), _lastMac1, cookie))
            return false;
        cookie.CopyTo(_cookie);
        CryptographicOperations.ZeroMemory(cookie);
        _hasCookie = true;
        _cookieSetAt = now;
        return true;
    }

    public void Clear()
    {
        CryptographicOperations.ZeroMemory(_cookie);
        _hasCookie = false;
        _hasLastMac1 = false;
    }
}
