namespace LlavaMech.Analysis;

/// <summary>What the statistics need at the last position t = T-1 of one example.</summary>
/// <param name="ResidPre">[L, D] x_l, input of layer l at t.</param>
/// <param name="AttnOut">[L, D] a_l, attention block output (after o_proj) at t.</param>
/// <param name="MlpOut">[L, D] f_l, MLP output at t.</param>
/// <param name="ResidFinal">[D] h_L, last layer output before the final norm, at t.</param>
/// <param name="PatternLastRow">[L, H, T] post-softmax attention of query t.</param>
/// <param name="Values">[L, T, KV, d] v_proj outputs (no rotary), KV = num_key_value_heads.</param>
/// <param name="MlpPost">[L, I] m = silu(gate(n)) * up(n) at t.</param>
public sealed record LastPositionActivations(
    Tensor ResidPre,
    Tensor AttnOut,
    Tensor MlpOut,
    Tensor ResidFinal,
    Tensor PatternLastRow,
    Tensor Values,
    Tensor MlpPost)
{
    public int Layers => (int)ResidPre.shape[0];
    public int Hidden => (int)ResidPre.shape[1];
    public int Heads => (int)PatternLastRow.shape[1];
    public int Positions => (int)PatternLastRow.shape[2];
    public int KeyValueHeads => (int)Values.shape[2];
    public int HeadDim => (int)Values.shape[3];
    public int MlpWidth => (int)MlpPost.shape[1];

    /// <summary>Throws <see cref="ArgumentException"/> when shapes disagree with each other or with <paramref name="w"/>.</summary>
    public void Validate(ReadoutWeights w)
    {
        static string S(Tensor t) => "[" + string.Join(", ", t.shape) + "]";
        void Need(bool ok, string what)
        {
            if (!ok) throw new ArgumentException("LastPositionActivations/ReadoutWeights shape mismatch: " + what);
        }
        Need(ResidPre.dim() == 2, $"ResidPre must be [L, D], got {S(ResidPre)}");
        long L = ResidPre.shape[0], D = ResidPre.shape[1];
        Need(AttnOut.shape.SequenceEqual(new[] { L, D }), $"AttnOut {S(AttnOut)} != [{L}, {D}]");
        Need(MlpOut.shape.SequenceEqual(new[] { L, D }), $"MlpOut {S(MlpOut)} != [{L}, {D}]");
        Need(ResidFinal.shape.SequenceEqual(new[] { D }), $"ResidFinal {S(ResidFinal)} != [{D}]");
        Need(PatternLastRow.dim() == 3 && PatternLastRow.shape[0] == L, $"PatternLastRow {S(PatternLastRow)} must be [L={L}, H, T]");
        long H = PatternLastRow.shape[1], T = PatternLastRow.shape[2];
        Need(Values.dim() == 4 && Values.shape[0] == L && Values.shape[1] == T, $"Values {S(Values)} must be [L={L}, T={T}, KV, d]");
        long KV = Values.shape[2], d = Values.shape[3];
        Need(MlpPost.dim() == 2 && MlpPost.shape[0] == L, $"MlpPost {S(MlpPost)} must be [L={L}, I]");
        long I = MlpPost.shape[1];
        Need(H == w.NumHeads, $"pattern has {H} heads, weights say {w.NumHeads}");
        Need(KV == w.NumKeyValueHeads, $"values have {KV} kv heads, weights say {w.NumKeyValueHeads}");
        Need(KV > 0 && H % KV == 0, $"num_heads {H} is not a multiple of num_key_value_heads {KV}");
        Need(w.FinalNorm.shape.SequenceEqual(new[] { D }), $"FinalNorm {S(w.FinalNorm)} != [{D}]");
        Need(w.LmHead.dim() == 2 && w.LmHead.shape[1] == D, $"LmHead {S(w.LmHead)} must be [V, {D}]");
        Need(w.OProj.Count == L && w.DownProj.Count == L, $"weights have {w.OProj.Count} o_proj and {w.DownProj.Count} down_proj, activations {L} layers");
        for (int l = 0; l < L; l++)
        {
            Need(w.OProj[l].shape.SequenceEqual(new[] { D, H * d }), $"OProj[{l}] {S(w.OProj[l])} != [{D}, {H * d}]");
            Need(w.DownProj[l].shape.SequenceEqual(new[] { D, I }), $"DownProj[{l}] {S(w.DownProj[l])} != [{D}, {I}]");
        }
    }

    /// <summary>The same activations as tensors of <paramref name="dtype"/> on <paramref name="device"/> (handles owned by the current dispose scope).</summary>
    public LastPositionActivations To(ScalarType dtype, Device device) => new(
        ResidPre.to(device).to(dtype), AttnOut.to(device).to(dtype), MlpOut.to(device).to(dtype),
        ResidFinal.to(device).to(dtype), PatternLastRow.to(device).to(dtype), Values.to(device).to(dtype),
        MlpPost.to(device).to(dtype));
}

/// <summary>Read-only views of model weights (no copies: these are the model's own parameters).</summary>
/// <param name="FinalNorm">[D] g, the final RMSNorm weight.</param>
/// <param name="LmHead">[V, D] W_U.</param>
/// <param name="RmsNormEps">the model's rms_norm_eps.</param>
/// <param name="OProj">per layer [D, H*d].</param>
/// <param name="DownProj">per layer [D, I].</param>
public sealed record ReadoutWeights(
    Tensor FinalNorm,
    Tensor LmHead,
    double RmsNormEps,
    IReadOnlyList<Tensor> OProj,
    IReadOnlyList<Tensor> DownProj,
    int NumHeads, int NumKeyValueHeads)
{
    public int Vocab => (int)LmHead.shape[0];
    public int Hidden => (int)LmHead.shape[1];
    public int Layers => OProj.Count;
    public Device Device => LmHead.device;

    /// <summary>The model's unembedded head blocks and neuron columns, kept across examples (null: computed per example).</summary>
    public UnembeddedDirections? Directions { get; init; }

    /// <summary>
    /// Copies of the weights in <paramref name="dtype"/> (and on <paramref name="device"/>), for a model stored in
    /// float16/bfloat16 whose statistics should run in float32 without converting W_U on every call. The copies are
    /// detached from any dispose scope; dispose them with <see cref="DisposeAll"/>.
    /// </summary>
    public ReadoutWeights ConvertTo(ScalarType dtype, Device? device = null)
    {
        var dev = device ?? Device;
        Tensor C(Tensor t) => t.detach().to(dev).to(dtype).DetachFromDisposeScope();
        return this with
        {
            FinalNorm = C(FinalNorm),
            LmHead = C(LmHead),
            OProj = OProj.Select(C).ToArray(),
            DownProj = DownProj.Select(C).ToArray(),
        };
    }

    /// <summary>Disposes every tensor of this record: only for records made by <see cref="ConvertTo"/>.</summary>
    public void DisposeAll()
    {
        FinalNorm.Dispose();
        LmHead.Dispose();
        foreach (var t in OProj) t.Dispose();
        foreach (var t in DownProj) t.Dispose();
    }
}

/// <summary>One attention head, by layer and head index.</summary>
public readonly record struct HeadIndex(int Layer, int Head)
{
    public override string ToString() => $"{Layer}_{Head}";
}
