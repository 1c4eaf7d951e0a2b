namespace LlavaMech.Processing;

/// <summary>A model's image processor: an image file into the pixel values its vision tower takes.</summary>
public interface IImageProcessor
{
    /// <summary>Reads and preprocesses an image file.</summary>
    PreprocessedImage Preprocess(string imagePath);

    /// <summary>Largest width x height accepted, checked from the image header before any pixel is decoded.</summary>
    long MaxPixels { get; }
}
